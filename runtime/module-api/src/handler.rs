//! Typed callback handlers, and their type-erased form the runtime stores.

use crate::error::ModuleError;
use futures::future::{self, LocalBoxFuture};
use futures::FutureExt;
use glia_bus_schema::{CallbackArgs, CallbackRequest, InvocationError, ModuleAnswer};
use std::future::Future;
use std::rc::Rc;

/// A future a handler returns; it runs on the module's own thread.
pub type AnswerFuture<A> = LocalBoxFuture<'static, Result<A, ModuleError>>;

/// The stored form of a typed handler.
type TypedFn<R> = Rc<dyn Fn(&R) -> AnswerFuture<<R as CallbackArgs>::Answer>>;

/// The future an erased handler returns.
pub type ErasedFuture = LocalBoxFuture<'static, Result<ModuleAnswer, InvocationError>>;

/// A handler for the callback whose arguments are `R`.
pub struct Handler<R: CallbackArgs>(TypedFn<R>);

impl<R: CallbackArgs> Clone for Handler<R> {
    fn clone(&self) -> Self {
        Handler(self.0.clone())
    }
}

impl<R: CallbackArgs> Handler<R> {
    /// An async handler. It borrows the arguments; the future it returns must own what it
    /// keeps, so copy only what the answer needs.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(&R) -> Fut + 'static,
        Fut: Future<Output = Result<R::Answer, ModuleError>> + 'static,
    {
        Handler(Rc::new(move |args: &R| f(args).boxed_local()))
    }

    /// A handler that answers at once, without awaiting anything.
    pub fn sync<F>(f: F) -> Self
    where
        F: Fn(&R) -> Result<R::Answer, ModuleError> + 'static,
    {
        Handler(Rc::new(move |args: &R| {
            future::ready(f(args)).boxed_local()
        }))
    }

    /// Forgets the argument type, for storage beside handlers of other callbacks.
    pub fn erase(self) -> ErasedHandler {
        let inner = self.0;
        ErasedHandler(Rc::new(
            move |request: &CallbackRequest| match R::from_request(request) {
                Some(args) => inner(args)
                    .map(|result| result.map(R::wrap_answer).map_err(InvocationError::from))
                    .boxed_local(),
                None => future::ready(Err(InvocationError::InvalidAnswer {
                    detail: format!(
                        "handler for {} was given a {} request",
                        R::CALLBACK,
                        request.callback()
                    ),
                }))
                .boxed_local(),
            },
        ))
    }
}

/// A handler of any callback: takes the tagged request, answers the tagged answer.
#[derive(Clone)]
pub struct ErasedHandler(Rc<dyn Fn(&CallbackRequest) -> ErasedFuture>);

impl ErasedHandler {
    /// A handler of tagged requests, for adapters that decide per request what to answer
    /// (a remote module, a scripted or chaos module).
    pub fn new<F>(f: F) -> Self
    where
        F: Fn(&CallbackRequest) -> ErasedFuture + 'static,
    {
        ErasedHandler(Rc::new(f))
    }

    /// Calls the handler. The synchronous part runs now, the rest when the future is polled.
    pub fn call(
        &self,
        request: &CallbackRequest,
    ) -> LocalBoxFuture<'static, Result<ModuleAnswer, InvocationError>> {
        (self.0)(request)
    }
}
