//! glia's own threads inside Synapse's process: an actix system that starts the coordinator
//! and the modules from a config (as `glia serve` does), keeps them supervised, finishes the
//! dispatches that did not answer on Synapse's thread, and optionally serves glia's HTTP API
//! (`/metrics`, `/health`, the callbacks) on the config's `listen`.

use futures::channel::oneshot;
use glia_module_api::ModuleRegistry;
use glia_runtime::app::{self, ConfigLoader, Glia, PythonCheck, StartOptions};
use glia_runtime::config::{ConfigFileError, GliaConfig, Placement};
use glia_runtime::coordinator::Coordinator;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

/// A running embedded glia: the coordinator, and the thread that owns it.
pub struct Engine {
    /// The running glia (its config, listing and telemetry).
    pub glia: Arc<Glia>,
    /// Its coordinator, which every callback is dispatched to.
    pub coordinator: Arc<Coordinator>,
    /// glia's system thread, where dispatches that wait go on.
    pub arbiter: actix_rt::ArbiterHandle,
    /// glia's runtime: timers started on Synapse's thread are its, so they fire whatever
    /// Synapse's thread does.
    pub handle: tokio::runtime::Handle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What glia's thread hands back once glia runs.
struct Started {
    glia: Arc<Glia>,
    arbiter: actix_rt::ArbiterHandle,
    handle: tokio::runtime::Handle,
}

/// Reads and checks the config at `path` as `glia serve` does (the Rust modules of
/// `registry`; the Python modules placed here are checked in a host).
pub fn load(path: &Path, registry: &ModuleRegistry) -> Result<GliaConfig, ConfigFileError> {
    app::load_file_with(path, registry, PythonCheck::Placement(Placement::Local))
}

/// How a reload (`POST /_glia/v1/reload`, with `http`) reads the config anew: the same file
/// and checks as at start.
pub fn loader(path: PathBuf, registry: ModuleRegistry) -> ConfigLoader {
    Arc::new(move || load(&path, &registry))
}

impl Engine {
    /// Starts glia from the config file at `path` (modules from `registry`), serving its
    /// HTTP API too when `http`; a reload reads the same file again.
    pub fn start_file(
        path: PathBuf,
        registry: ModuleRegistry,
        http: bool,
    ) -> Result<Engine, String> {
        let config = load(&path, &registry).map_err(|e| e.to_string())?;
        let options = StartOptions {
            loader: Some(loader(path, registry)),
            ..StartOptions::default()
        };
        Engine::start(config, options, http)
    }

    /// Starts glia on its own thread from a checked `config`, serving its HTTP API too
    /// when `http`; returns once every module has started (or glia refused to start).
    pub fn start(config: GliaConfig, options: StartOptions, http: bool) -> Result<Engine, String> {
        let (started_tx, started_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("glia-embedded".into())
            .spawn(move || run(config, options, http, started_tx, stopped))
            .map_err(|e| format!("cannot start glia's thread: {e}"))?;
        let started = match started_rx.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("glia's thread ended before glia started".into()),
        };
        Ok(Engine {
            coordinator: started.glia.coordinator().clone(),
            glia: started.glia,
            arbiter: started.arbiter,
            handle: started.handle,
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops glia as `glia serve` does on SIGTERM (in-flight dispatches get the config's
    /// grace, then modules stop in reverse order) and waits for its thread.
    pub fn stop(&self) {
        self.begin_stop();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }

    /// Tells glia to stop as [`Engine::stop`] does, without waiting for it: a test that
    /// leaves a dispatch waiting forever must not wait out the grace.
    pub fn begin_stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
    }

    /// glia's metrics in Prometheus's text format (what its `GET /metrics` serves), or
    /// `None` when the config turned them off.
    pub fn metrics(&self) -> Option<String> {
        self.glia
            .telemetry()
            .metrics()
            .map(|metrics| metrics.render())
    }
}

/// glia's thread: starts glia, reports, runs until told to stop, then shuts down.
fn run(
    config: GliaConfig,
    options: StartOptions,
    http: bool,
    started: mpsc::Sender<Result<Started, String>>,
    stopped: oneshot::Receiver<()>,
) {
    actix_rt::System::new().block_on(async move {
        let glia = match Glia::start_with(config, options).await {
            Ok(glia) => Arc::new(glia),
            Err(e) => {
                let _ = started.send(Err(e.to_string()));
                return;
            }
        };
        let server = match http.then(|| serve_http(&glia)).transpose() {
            Ok(server) => server,
            Err(e) => {
                let _ = started.send(Err(e));
                glia.shutdown(std::time::Duration::ZERO).await;
                return;
            }
        };
        let _ = started.send(Ok(Started {
            glia: glia.clone(),
            arbiter: actix_rt::Arbiter::current(),
            handle: tokio::runtime::Handle::current(),
        }));
        let _ = stopped.await;
        let grace = glia.config().shutdown_grace;
        match &server {
            Some(stop) => futures::join!(stop.stop(), glia.shutdown(grace)).1,
            None => glia.shutdown(grace).await,
        }
    });
}

/// Serves glia's HTTP API on the config's `listen` with one worker, as a task of glia's
/// thread; returns what stops it.
fn serve_http(glia: &Arc<Glia>) -> Result<glia_runtime::http::GracefulStop, String> {
    let listen = glia.config().listen.clone();
    let bound = glia_runtime::http::serve(glia.clone(), &listen, Some(1))
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, "embedded glia serving its HTTP API on {}", bound.urls);
    actix_rt::spawn(async move {
        if let Err(e) = bound.server.await {
            tracing::error!(error = %e, "embedded glia's HTTP API stopped");
        }
    });
    Ok(bound.stop)
}
