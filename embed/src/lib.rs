//! glia's runtime inside Synapse's process: the Python extension `glia_embedded._native`,
//! which the Synapse module `glia_embedded.GliaEmbedded` drives. It starts glia's coordinator
//! and the modules of a glia config on glia's own threads, and dispatches each callback from
//! Synapse's thread (both in `glia-embedded-engine`, which has no Python): the request is the
//! bus schema's JSON, as the bridge posts it, and the reply the same JSON glia's HTTP API
//! answers, both as Python objects rather than text (`pyde` reads the request, `pyjson`
//! writes the reply). It also hands glia's metrics to Synapse's Prometheus registry and
//! Synapse's trace context to each dispatch.

mod notify;
mod pyde;
mod pyjson;

use glia_bus_schema::{Callback, CallbackRequest};
use glia_embedded_engine::{caller, Engine, First, Outcome};
use notify::Notifier;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pyo3::create_exception!(
    _native,
    DispatchFailed,
    pyo3::exceptions::PyException,
    "glia could not decide: (status, errcode, error), as its HTTP API answers a dispatch error."
);

/// A running embedded glia.
#[pyclass(frozen, module = "glia_embedded._native")]
struct Runtime {
    engine: Engine,
    notifier: Notifier,
    tokens: AtomicU64,
}

#[pymethods]
impl Runtime {
    /// Loads the glia config at `config_path` (checked as `glia serve` checks it), starts its
    /// modules and coordinator on glia's threads, and serves glia's HTTP API too when
    /// `http`. `notify(token, reply, error)` is called, from another thread, when a
    /// dispatch that waited is decided.
    #[new]
    fn new(py: Python<'_>, config_path: PathBuf, http: bool, notify: Py<PyAny>) -> PyResult<Self> {
        glia_runtime::logging::init(glia_runtime::logging::LogFormat::Text, "info");
        let engine = py
            .detach(|| Engine::start_file(config_path, glia_modules::builtin_registry(), http))
            .map_err(PyRuntimeError::new_err)?;
        Ok(Runtime {
            engine,
            notifier: Notifier::start(notify).map_err(PyRuntimeError::new_err)?,
            tokens: AtomicU64::new(0),
        })
    }

    /// glia's module listing, as `GET /_glia/v1/modules` answers it (JSON).
    fn listing(&self) -> String {
        serde_json::json!({
            "modules": self.engine.glia.modules(),
            "plans": self.engine.glia.plan_listing(),
        })
        .to_string()
    }

    /// glia's metrics in Prometheus's text format (as its `GET /metrics` serves them), or
    /// `None` when its config turned them off.
    fn metrics(&self, py: Python<'_>) -> Option<String> {
        py.detach(|| self.engine.metrics())
    }

    /// Dispatches callback `name` with `args` (its request: the bus schema's JSON, as
    /// Python objects): the reply (as `json.loads` gives it) when it was decided at once,
    /// else an int token, which `notify` is later called with. Raises `ValueError` for an
    /// unknown callback or bad arguments, and `DispatchFailed` when glia could not decide.
    /// A W3C `traceparent` (and `tracestate`) of Synapse's active span makes glia's span of
    /// the dispatch its child.
    #[pyo3(signature = (name, args, traceparent=None, tracestate=None))]
    fn call<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        args: &Bound<'py, PyAny>,
        traceparent: Option<&str>,
        tracestate: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = decode(name, args)?;
        // The GIL is kept for this one poll, as a native module keeps it: what it runs answers
        // at once or moves to glia's thread, and releasing it would hand it to any other
        // Python thread waiting, then wait for that thread to give it back.
        let first = std::panic::catch_unwind(AssertUnwindSafe(|| {
            caller::first_poll(&self.engine, request, traceparent, tracestate)
        }))
        .map_err(|_| PyRuntimeError::new_err("glia panicked dispatching the callback"))?;
        match first {
            First::Done(outcome) => reply(py, outcome),
            First::Waiting(waiting) => {
                let token = self.tokens.fetch_add(1, Ordering::Relaxed);
                let to = self.notifier.sender();
                let done = Box::new(move |outcome: Outcome| to.send(token, outcome));
                caller::finish_on_glia(&self.engine, waiting, done);
                Ok(token.into_pyobject(py)?.into_any())
            }
        }
    }

    /// Runs the ready tasks of the `per_thread` instances living on the calling thread.
    fn drive(&self, py: Python<'_>) {
        py.detach(caller::drive);
    }

    /// Stops glia (in-flight dispatches get the config's grace period).
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.engine.stop());
    }
}

/// The typed request of callback `name` from its arguments: read straight from the Python
/// objects (`pyde`), or, when that refuses them, through JSON values, which gives the same
/// request or names what is wrong.
fn decode(name: &str, args: &Bound<'_, PyAny>) -> PyResult<CallbackRequest> {
    match decode_direct(name, args) {
        Some(request) => Ok(request),
        None => decode_json(name, pyjson::to_json(args)?),
    }
}

/// The typed request read straight from the Python objects, if that path takes them.
fn decode_direct(name: &str, args: &Bound<'_, PyAny>) -> Option<CallbackRequest> {
    let callback = name.parse::<Callback>().ok()?;
    CallbackRequest::from_args_deserializer(callback, pyde::PyDe::new(args)).ok()
}

/// For tests/e2e/test_embedded_decode.py: the request of callback `name` read straight from
/// `args` (`None` when that path refuses them) and read through JSON values (or that path's
/// error), each as its debug text, so that a test can check the two agree.
#[pyfunction]
fn decode_paths(name: &str, args: &Bound<'_, PyAny>) -> (Option<String>, String) {
    let direct = decode_direct(name, args).map(|request| format!("{request:?}"));
    let via_json = pyjson::to_json(args)
        .and_then(|value| decode_json(name, value))
        .map_or_else(|e| format!("error: {e}"), |request| format!("{request:?}"));
    (direct, via_json)
}

/// The typed request of callback `name` from its JSON `args`.
fn decode_json(name: &str, args: serde_json::Value) -> PyResult<CallbackRequest> {
    let callback: Callback = name
        .parse()
        .map_err(|_| PyValueError::new_err(format!("unknown callback {name:?}")))?;
    CallbackRequest::from_json_value(callback, args)
        .map_err(|e| PyValueError::new_err(format!("invalid arguments for {callback}: {e}")))
}

/// The reply as Python objects, or `DispatchFailed`.
fn reply<'py>(py: Python<'py>, outcome: Outcome) -> PyResult<Bound<'py, PyAny>> {
    match notify::encode(outcome) {
        Ok(value) => pyjson::to_py(py, &value),
        Err((status, errcode, error)) => Err(DispatchFailed::new_err((status, errcode, error))),
    }
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Runtime>()?;
    m.add_function(wrap_pyfunction!(decode_paths, m)?)?;
    m.add("DispatchFailed", m.py().get_type::<DispatchFailed>())?;
    Ok(())
}
