//! The running glia as its HTTP server reaches it.

use super::{Glia, ReloadError};
use crate::config::GliaConfig;
use crate::coordinator::Coordinator;
use crate::http::{ReloadRefused, Service, WebTarget};
use crate::telemetry::Telemetry;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;

impl Service for Glia {
    fn config(&self) -> Arc<GliaConfig> {
        Glia::config(self)
    }

    fn coordinator(&self) -> &Arc<Coordinator> {
        Glia::coordinator(self)
    }

    fn telemetry(&self) -> &Arc<Telemetry> {
        Glia::telemetry(self)
    }

    fn failed_modules(&self) -> Vec<String> {
        Glia::failed_modules(self)
    }

    fn bus_connected(&self) -> Option<bool> {
        Glia::bus_connected(self)
    }

    fn unserved_modules(&self) -> BoxFuture<'_, Vec<String>> {
        Glia::unserved_modules(self).boxed()
    }

    fn modules(&self) -> serde_json::Value {
        serde_json::to_value(Glia::modules(self)).unwrap_or_default()
    }

    fn plan_listing(&self) -> serde_json::Value {
        Glia::plan_listing(self)
    }

    fn web_target(&self, path: &str) -> Option<WebTarget> {
        Glia::web_target(self, path)
    }

    fn reload(&self) -> BoxFuture<'_, Result<serde_json::Value, ReloadRefused>> {
        async move {
            match Glia::reload(self).await {
                Ok(report) => Ok(serde_json::to_value(report).unwrap_or_default()),
                Err(e) => Err(ReloadRefused {
                    shutting_down: matches!(e, ReloadError::ShuttingDown),
                    message: e.to_string(),
                }),
            }
        }
        .boxed()
    }
}
