//! The bus: how the coordinator reaches a module, wherever it runs.

mod in_process;
pub mod nats;
pub mod nats_check;
pub mod refusals;
pub mod roster;
mod routed;

pub use in_process::{InProcessBus, ModuleRoute};
pub use nats::NatsBus;
pub use routed::RoutedBus;

use crate::host::Slot;
use futures::future::BoxFuture;
use glia_bus_schema::{CallbackRequest, InvocationError, ModuleAnswer};
use std::sync::Arc;
use std::time::Instant;

/// A module's answer, or why there is none.
pub type InvokeFuture = BoxFuture<'static, Result<ModuleAnswer, InvocationError>>;

/// Which handler of which module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// Index of the module in config order.
    pub module: usize,
    /// The handler.
    pub slot: Slot,
}

/// What travels beside the arguments.
#[derive(Debug, Clone)]
pub struct InvocationMeta {
    /// The dispatch's request id.
    pub request_id: Arc<str>,
    /// The dispatch's decision id (its record in the decision log, returned to the caller).
    pub decision_id: Arc<str>,
    /// After this no one waits for the answer.
    pub deadline: Instant,
    /// The trace context: the caller's on the way into the coordinator, the invocation
    /// span's on the way to a module (sent to remote modules as `traceparent`).
    pub trace: opentelemetry::Context,
}

/// How an invocation travels, for its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To an actor in this process.
    InProcess,
    /// Over NATS to a worker.
    Nats,
}

/// Carries invocations to modules. The coordinator applies timeouts and failure policies;
/// a bus only delivers and reports typed errors (unavailable, crashed, ...).
pub trait Bus: Send + Sync {
    /// Sends one invocation. Waiting for an in-flight permit (back-pressure) is part of it.
    fn invoke(
        &self,
        target: Target,
        request: Arc<CallbackRequest>,
        meta: &InvocationMeta,
    ) -> InvokeFuture;

    /// How invocations to `target` travel.
    fn route(&self, _target: Target) -> Route {
        Route::InProcess
    }
}
