//! The actor that owns one module instance and runs its callbacks.

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use futures::FutureExt;
use glia_bus_schema::{CallbackRequest, InvocationError, ModuleAnswer};
use glia_module_api::{ErasedHandler, WebHandler, WebRequest, WebResponse};
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// Which of a module's registered handlers to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The n-th entry of `Registrations::callbacks`.
    Callback(usize),
    /// The n-th entry of `Registrations::auth_checkers`.
    AuthChecker(usize),
}

/// Invoke one handler. The permit bounds the module's in-flight invocations; it is released
/// when the handler finishes, even if the caller stopped waiting.
pub struct Invoke {
    /// The handler.
    pub slot: Slot,
    /// The arguments, shared by every module of the dispatch.
    pub request: Arc<CallbackRequest>,
    /// Held until the handler finishes.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Message for Invoke {
    type Result = Result<ModuleAnswer, InvocationError>;
}

/// Serve one request to a web resource.
pub struct WebCall {
    /// Index into `Registrations::web_resources`.
    pub slot: usize,
    /// The request.
    pub request: WebRequest,
}

impl Message for WebCall {
    type Result = WebResponse;
}

/// One module instance and its handlers.
pub struct ModuleActor {
    pub(crate) name: Arc<str>,
    // Keeps the instance alive as long as its handlers may run.
    pub(crate) _instance: Box<dyn Any>,
    pub(crate) callbacks: Vec<ErasedHandler>,
    pub(crate) auth_checkers: Vec<ErasedHandler>,
    pub(crate) web: Vec<WebHandler>,
    pub(crate) mailbox: usize,
}

impl Actor for ModuleActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_owned())
}

impl Handler<Invoke> for ModuleActor {
    type Result = ResponseFuture<Result<ModuleAnswer, InvocationError>>;

    fn handle(&mut self, msg: Invoke, _: &mut Self::Context) -> Self::Result {
        let handler = match msg.slot {
            Slot::Callback(i) => self.callbacks.get(i),
            Slot::AuthChecker(i) => self.auth_checkers.get(i),
        };
        let Some(handler) = handler else {
            let name = self.name.clone();
            return Box::pin(async move {
                Err(InvocationError::Unavailable {
                    reason: format!("module {name} has no handler {:?}", msg.slot),
                })
            });
        };
        // A panic is a crash of this invocation, whether it happens before the first await
        // or while the future runs; it must not take the module's thread down.
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(&msg.request)));
        let permit = msg.permit;
        Box::pin(async move {
            let result = match started {
                Ok(future) => match AssertUnwindSafe(future).catch_unwind().await {
                    Ok(result) => result,
                    Err(payload) => Err(InvocationError::Crashed {
                        reason: panic_message(payload.as_ref()),
                    }),
                },
                Err(payload) => Err(InvocationError::Crashed {
                    reason: panic_message(payload.as_ref()),
                }),
            };
            drop(permit);
            result
        })
    }
}

impl Handler<WebCall> for ModuleActor {
    type Result = ResponseFuture<WebResponse>;

    fn handle(&mut self, msg: WebCall, _: &mut Self::Context) -> Self::Result {
        let Some(handler) = self.web.get(msg.slot) else {
            return Box::pin(async { web_error(404, "M_NOT_FOUND", "no such resource") });
        };
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(msg.request)));
        let name = self.name.clone();
        Box::pin(async move {
            let outcome = match started {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(payload) => Err(payload),
            };
            outcome.unwrap_or_else(|payload| {
                tracing::error!(module = %name, panic = %panic_message(payload.as_ref()), "web resource crashed");
                web_error(500, "M_UNKNOWN", "Internal server error")
            })
        })
    }
}

fn web_error(status: u16, errcode: &str, error: &str) -> WebResponse {
    WebResponse::json(
        status,
        &serde_json::json!({ "errcode": errcode, "error": error }),
    )
}
