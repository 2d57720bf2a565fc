//! The actor that hosts one supervised module instance and runs its callbacks.

use super::registration::Slot;
use super::supervised::{panic_message, Supervised};
use actix::{Actor, Context, Handler, Message, ResponseFuture};
use futures::channel::oneshot;
use futures::FutureExt;
use glia_bus_schema::{CallbackRequest, InvocationError, ModuleAnswer};
use glia_module_api::{WebRequest, WebResponse};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// Invoke one handler. The permit bounds the module's in-flight invocations; it is released
/// when the handler finishes. The invocation runs to completion even if the caller stopped
/// waiting (as Synapse lets a callback finish), so the answer travels on its own channel
/// rather than actix's, which would skip a message whose caller has gone.
pub struct Invoke {
    /// The handler.
    pub slot: Slot,
    /// The arguments, shared by every module of the dispatch.
    pub request: Arc<CallbackRequest>,
    /// Held until the handler finishes.
    pub permit: Option<OwnedSemaphorePermit>,
    /// The invocation's trace context (crash and restart events go on its span).
    pub trace: opentelemetry::Context,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<ModuleAnswer, InvocationError>>,
}

impl Message for Invoke {
    type Result = ();
}

/// Serve one request to a web resource.
pub struct WebCall {
    /// Index into the module's web resources.
    pub slot: usize,
    /// The request.
    pub request: WebRequest,
}

impl Message for WebCall {
    type Result = WebResponse;
}

/// Stop the module: nothing new runs.
pub struct Stop;

impl Message for Stop {
    type Result = ();
}

/// Answered once every message sent before it has been handled (the mailbox is FIFO): lets a
/// caller wait until invocations already sent have started.
pub struct Flush;

impl Message for Flush {
    type Result = ();
}

/// One supervised module.
pub struct ModuleActor {
    pub(crate) module: Supervised,
    pub(crate) name: Arc<str>,
    pub(crate) mailbox: usize,
}

impl Actor for ModuleActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Handler<Invoke> for ModuleActor {
    type Result = ();

    fn handle(&mut self, msg: Invoke, _: &mut Self::Context) {
        let mut answer = self
            .module
            .invoke(msg.slot, msg.request, msg.permit, msg.trace);
        // A synchronous handler has answered by its first poll: the answer goes now, with no
        // task to spawn and schedule. Anything else is left to a task, polled from where the
        // first poll stopped.
        match (&mut answer).now_or_never() {
            Some(result) => {
                let _ = msg.reply.send(result);
            }
            None => {
                actix_rt::spawn(async move {
                    let _ = msg.reply.send(answer.await);
                });
            }
        }
    }
}

impl Handler<WebCall> for ModuleActor {
    type Result = ResponseFuture<WebResponse>;

    fn handle(&mut self, msg: WebCall, _: &mut Self::Context) -> Self::Result {
        let Some(handler) = self.module.web_handler(msg.slot) else {
            return Box::pin(async { web_error(503, "M_UNKNOWN", "The module is not running") });
        };
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(msg.request)));
        let name = self.name.clone();
        Box::pin(async move {
            let outcome = match started {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(payload) => Err(payload),
            };
            outcome.unwrap_or_else(|payload| {
                tracing::error!(module = %name, panic = %panic_message(payload.as_ref()), "web resource panicked");
                web_error(500, "M_UNKNOWN", "Internal server error")
            })
        })
    }
}

impl Handler<Stop> for ModuleActor {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Self::Context) {
        self.module.stop();
    }
}

/// A web response in Matrix's error form (`{"errcode", "error"}`), for a page glia cannot get
/// from its module.
pub fn web_error(status: u16, errcode: &str, error: &str) -> WebResponse {
    WebResponse::json(
        status,
        &serde_json::json!({ "errcode": errcode, "error": error }),
    )
}

impl Handler<Flush> for ModuleActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {}
}
