//! What the HTTP server serves, as a trait the app implements: the server sits below the app
//! that builds and reloads the topology, so it reaches the running glia through this.

use crate::bus::NatsBus;
use crate::config::GliaConfig;
use crate::coordinator::Coordinator;
use crate::host::ModuleActor;
use crate::telemetry::Telemetry;
use actix::Addr;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

use super::routes::WebRoute;

/// The running glia, as its HTTP server sees it.
pub trait Service: Send + Sync + 'static {
    /// The config in force.
    fn config(&self) -> Arc<GliaConfig>;
    /// Decides callbacks.
    fn coordinator(&self) -> &Arc<Coordinator>;
    /// Spans, metrics and the decision log.
    fn telemetry(&self) -> &Arc<Telemetry>;
    /// The names of the modules that are failed.
    fn failed_modules(&self) -> Vec<String>;
    /// Whether the NATS connection is up (`None` on the internal bus).
    fn bus_connected(&self) -> Option<bool>;
    /// The modules placed on NATS that no worker serves.
    fn unserved_modules(&self) -> BoxFuture<'_, Vec<String>>;
    /// Each module: name, callbacks, state (`GET /_glia/v1/modules`).
    fn modules(&self) -> serde_json::Value;
    /// Each callback's plan.
    fn plan_listing(&self) -> serde_json::Value;
    /// The web resource that answers `path`, all of one generation.
    fn web_target(&self, path: &str) -> Option<WebTarget>;
    /// Re-reads and applies the config: what changed, or why nothing did.
    fn reload(&self) -> BoxFuture<'_, Result<serde_json::Value, ReloadRefused>>;
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRefused {
    /// Shutdown has begun (503), rather than a bad config or a module that cannot start (400).
    pub shutting_down: bool,
    /// What the operator is told.
    pub message: String,
}

/// A web resource and what serving it needs.
pub struct WebTarget {
    /// Where it is registered.
    pub route: WebRoute,
    /// Its module's actor (none if the module is not in this process).
    pub addr: Option<Addr<ModuleActor>>,
    /// The bus to its module's workers, when the module is placed on NATS.
    pub nats: Option<Arc<NatsBus>>,
    /// Its module's name.
    pub name: String,
    /// Its module's timeout, which a web request answers within.
    pub timeout: Duration,
}
