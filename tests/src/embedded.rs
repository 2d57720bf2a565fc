//! The embedded placement in tests: glia started by `glia-embedded-engine` on threads of its
//! own, and a thread standing in for Synapse's that dispatches each request as the Python
//! extension does on Synapse's thread: polls it once there, hands it to glia's thread if it
//! still waits, and between requests runs the ready tasks of the `per_thread` instances
//! living on it (as the extension's looping `drive`).

use futures::channel::oneshot;
use glia_bus_schema::CallbackRequest;
use glia_embedded_engine::{caller, Engine, First, Outcome};
use glia_runtime::app::StartOptions;
use glia_runtime::config::GliaConfig;
use glia_runtime::Glia;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long the stand-in for Synapse's thread idles before it runs its `per_thread`
/// instances' ready tasks. The extension does every 100 ms; a test waits on each such task
/// (a gated answer, a rebuild), so it runs them sooner.
const DRIVE_INTERVAL: Duration = Duration::from_millis(2);

/// One dispatch for the stand-in thread, with the caller's trace context.
struct Call {
    request: CallbackRequest,
    traceparent: Option<String>,
    tracestate: Option<String>,
    done: oneshot::Sender<Outcome>,
}

/// An embedded glia and the thread standing in for Synapse's.
pub struct EmbeddedGlia {
    engine: Arc<Engine>,
    calls: mpsc::Sender<Call>,
}

impl EmbeddedGlia {
    /// Starts glia from `config` on its own threads (as the extension does, without its HTTP
    /// API) and the stand-in thread. Started off this thread: a NATS worker the coordinator
    /// asks at start may be a task of this one.
    pub async fn start(config: GliaConfig, options: StartOptions) -> Result<EmbeddedGlia, String> {
        let (started, starting) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = started.send(Engine::start(config, options, false));
        });
        let engine = Arc::new(starting.await.map_err(|_| "glia's start-up panicked")??);
        let (calls, queue) = mpsc::channel();
        let on_thread = engine.clone();
        std::thread::Builder::new()
            .name("synapse-stand-in".into())
            .spawn(move || serve(&on_thread, queue))
            .map_err(|e| format!("cannot start the stand-in for Synapse's thread: {e}"))?;
        Ok(EmbeddedGlia { engine, calls })
    }

    /// The running glia (its coordinator, listing, telemetry).
    pub fn glia(&self) -> &Arc<Glia> {
        &self.engine.glia
    }

    /// The embedded engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Dispatches `request` from the stand-in for Synapse's thread.
    pub async fn dispatch(&self, request: CallbackRequest) -> Outcome {
        self.dispatch_traced(request, None, None).await
    }

    /// [`EmbeddedGlia::dispatch`] with the caller's W3C `traceparent` and `tracestate`.
    pub async fn dispatch_traced(
        &self,
        request: CallbackRequest,
        traceparent: Option<String>,
        tracestate: Option<String>,
    ) -> Outcome {
        let (done, decided) = oneshot::channel();
        let call = Call {
            request,
            traceparent,
            tracestate,
            done,
        };
        self.calls
            .send(call)
            .expect("the stand-in for Synapse's thread is running");
        decided
            .await
            .expect("the stand-in for Synapse's thread answers every dispatch")
    }
}

impl EmbeddedGlia {
    /// Stops glia as the extension does at Synapse's shutdown (its spans flushed) and waits
    /// for it, off this thread.
    pub async fn stop(self) {
        let engine = self.engine.clone();
        let (stopped, stopping) = oneshot::channel();
        std::thread::spawn(move || {
            engine.stop();
            let _ = stopped.send(());
        });
        let _ = stopping.await;
    }
}

impl Drop for EmbeddedGlia {
    /// glia stops on its own threads; a test does not wait out the grace of a dispatch it
    /// left waiting. The stand-in thread ends with its queue.
    fn drop(&mut self) {
        self.engine.begin_stop();
    }
}

/// The stand-in for Synapse's thread: each call polled once here, a waiting one finished on
/// glia's thread; idle, it runs the ready tasks of its `per_thread` instances.
fn serve(engine: &Engine, queue: mpsc::Receiver<Call>) {
    loop {
        let call = match queue.recv_timeout(DRIVE_INTERVAL) {
            Ok(call) => call,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                caller::drive();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let traceparent = call.traceparent.as_deref();
        let tracestate = call.tracestate.as_deref();
        match caller::first_poll(engine, call.request, traceparent, tracestate) {
            First::Done(outcome) => {
                let _ = call.done.send(outcome);
            }
            First::Waiting(waiting) => {
                let done = call.done;
                let finished = Box::new(move |outcome| {
                    let _ = done.send(outcome);
                });
                caller::finish_on_glia(engine, waiting, finished);
            }
        }
    }
}
