//! Dispatching on the calling thread (Synapse's reactor): the dispatch is polled once there,
//! so a callback whose modules answer at once (`instances: per_thread` modules with
//! synchronous handlers, run on this thread) is answered with no other thread involved. A
//! dispatch still waiting after that poll moves to glia's thread and finishes there.
//!
//! The calling thread gets an actix system of its own, created on first use and never run
//! as a loop: its arbiter is what lets `per_thread` instances live on this thread, and each
//! poll runs inside its `block_on`, so what an instance spawns here (the rest of a handler
//! that did not answer at once, a rebuild after a crash) is a task of this thread, run by
//! the next poll or [`drive`]. The dispatch's own timers are started in glia's runtime, so
//! its deadline and module timeouts fire even while this thread is busy in Python.

use crate::engine::Engine;
use futures::future::BoxFuture;
use glia_bus_schema::{CallbackRequest, DispatchReply};
use glia_runtime::propagation;
use glia_runtime::DispatchError;
use std::cell::RefCell;
use std::task::Poll;

/// A dispatch's outcome.
pub type Outcome = Result<DispatchReply, DispatchError>;

/// A dispatch that did not answer on the calling thread, to be finished elsewhere.
pub type Waiting = BoxFuture<'static, Outcome>;

thread_local! {
    /// This thread's actix system, for the `per_thread` instances that run here.
    static SYSTEM: RefCell<Option<actix_rt::SystemRunner>> = const { RefCell::new(None) };
}

/// Runs `f` inside this thread's actix system (created on first use).
fn in_system<T>(f: impl std::future::Future<Output = T>) -> T {
    SYSTEM.with(|system| {
        let mut system = system.borrow_mut();
        let runner = system.get_or_insert_with(actix_rt::System::new);
        runner.block_on(f)
    })
}

/// What the first poll of a dispatch gave.
pub enum First {
    /// It answered.
    Done(Outcome),
    /// It waits (on a module's thread, a timer, another process).
    Waiting(Waiting),
}

/// Starts the dispatch of `request` and polls it once on this thread. With the caller's W3C
/// `traceparent` (and `tracestate`), glia's span of the dispatch is a child of the caller's
/// span, as for a request to glia's HTTP API carrying them.
pub fn first_poll(
    engine: &Engine,
    request: CallbackRequest,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> First {
    let coordinator = engine.coordinator.clone();
    let handle = engine.handle.clone();
    let trace = propagation::extract(traceparent, tracestate);
    in_system(async move {
        let mut waiting: Waiting = Box::pin(async move {
            let meta = coordinator.meta(None, trace);
            coordinator.dispatch(request, meta).await
        });
        // Timers made during this poll belong to glia's runtime (see the module doc).
        let entered = handle.enter();
        let polled = futures::poll!(&mut waiting);
        drop(entered);
        match polled {
            Poll::Ready(outcome) => First::Done(outcome),
            Poll::Pending => First::Waiting(waiting),
        }
    })
}

/// Runs the tasks of this thread's `per_thread` instances that are ready (a handler's rest,
/// a rebuild after a crash): called now and then by the Python side, so they progress even
/// when no callback comes.
pub fn drive() {
    if SYSTEM.with(|system| system.borrow().is_some()) {
        in_system(tokio::task::yield_now());
    }
}

/// Finishes `waiting` on glia's thread and hands its outcome to `done` there; `done` gets
/// an error instead if glia's thread is gone (stopped) before it finishes.
pub fn finish_on_glia(engine: &Engine, waiting: Waiting, done: Box<dyn FnOnce(Outcome) + Send>) {
    let mut once = Once(Some(done));
    engine.arbiter.spawn(async move {
        let outcome = waiting.await;
        once.call(outcome);
    });
}

/// A completion called exactly once: with the outcome, or with an error when dropped first
/// (the task holding it was dropped with glia's thread).
struct Once(Option<Box<dyn FnOnce(Outcome) + Send>>);

impl Once {
    fn call(&mut self, outcome: Outcome) {
        if let Some(done) = self.0.take() {
            done(outcome);
        }
    }
}

impl Drop for Once {
    fn drop(&mut self) {
        self.call(Err(DispatchError {
            status: 503,
            errcode: glia_bus_schema::errcodes::M_UNKNOWN,
            error: "the embedded glia stopped before it answered".into(),
        }));
    }
}
