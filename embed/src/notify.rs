//! Telling Python that a dispatch which waited is decided. Python is called from a thread of
//! its own, never from glia's: taking the GIL can wait as long as Synapse's thread holds it,
//! and glia's thread must not stall its modules' supervision meanwhile.

use glia_embedded_engine::Outcome;
use pyo3::prelude::*;
use serde_json::Value;
use std::sync::mpsc;

/// A decided dispatch: its token, and its reply or its error.
type Decided = (u64, Result<Value, Failure>);

/// Why glia could not decide: status, errcode, message (as its HTTP API answers).
pub type Failure = (u16, &'static str, String);

/// The thread that calls Python's `notify(token, reply, error)`.
pub struct Notifier {
    to: mpsc::Sender<Decided>,
}

/// Where decided dispatches are sent, from any thread.
#[derive(Clone)]
pub struct ToNotifier(mpsc::Sender<Decided>);

impl ToNotifier {
    /// Hands the outcome of the dispatch `token` to Python.
    pub fn send(&self, token: u64, outcome: Outcome) {
        let _ = self.0.send((token, encode(outcome)));
    }
}

impl Notifier {
    /// Starts the thread that calls `notify`.
    pub fn start(notify: Py<PyAny>) -> Result<Notifier, String> {
        let (to, from) = mpsc::channel::<Decided>();
        std::thread::Builder::new()
            .name("glia-embedded-notify".into())
            .spawn(move || {
                for (token, decided) in from {
                    Python::attach(|py| {
                        let called = match decided {
                            Ok(reply) => crate::pyjson::to_py(py, &reply).and_then(|reply| {
                                notify.call1(py, (token, Some(reply), None::<Failure>))
                            }),
                            Err(failure) => {
                                notify.call1(py, (token, None::<Py<PyAny>>, Some(failure)))
                            }
                        };
                        if let Err(e) = called {
                            e.print(py);
                        }
                    });
                }
            })
            .map_err(|e| format!("cannot start the notifying thread: {e}"))?;
        Ok(Notifier { to })
    }

    /// Where decided dispatches are sent.
    pub fn sender(&self) -> ToNotifier {
        ToNotifier(self.to.clone())
    }
}

/// The reply as glia's HTTP API writes it (as a JSON value), or the failure it answers instead.
pub fn encode(outcome: Outcome) -> Result<Value, Failure> {
    match outcome {
        Ok(reply) => serde_json::to_value(&reply).map_err(|e| {
            (
                500,
                glia_bus_schema::errcodes::M_UNKNOWN,
                format!("cannot encode the reply: {e}"),
            )
        }),
        Err(e) => Err((e.status, e.errcode, e.error)),
    }
}
