//! Starting glia from YAML for a test, with its HTTP server on a free loopback port.

use crate::scripted::Scripted;
use glia_bus_schema::{CallbackArgs, CallbackRequest, DispatchReply};
use glia_module_api::ModuleRegistry;
use glia_runtime::app::load_str;
use glia_runtime::app::StartOptions;
use glia_runtime::config::ConfigFileError;
use glia_runtime::{http, Glia, StartError};
use serde_json::Value;
use std::sync::Arc;

/// The built-in modules plus the test modules (scripted, crashy, counter).
pub fn registry() -> ModuleRegistry {
    glia_modules::builtin_registry()
        .with::<Scripted>()
        .with::<crate::crashy::Crashy>()
        .with::<crate::counter::Counter>()
}

/// A running glia and the address of its HTTP server.
pub struct TestGlia {
    /// The running glia.
    pub glia: Arc<Glia>,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    server: actix_web::dev::ServerHandle,
}

impl TestGlia {
    /// Loads `yaml` (named `test.yaml` in errors).
    pub fn config(yaml: &str) -> Result<glia_runtime::config::GliaConfig, ConfigFileError> {
        load_str(yaml, "test.yaml", &registry())
    }

    /// Starts glia from `yaml`, panicking on a config error.
    pub async fn start(yaml: &str) -> TestGlia {
        Self::try_start(yaml)
            .await
            .unwrap_or_else(|e| panic!("glia did not start: {e}"))
    }

    /// Starts glia from `yaml`.
    pub async fn try_start(yaml: &str) -> Result<TestGlia, StartError> {
        Self::try_start_with(yaml, StartOptions::default()).await
    }

    /// Starts glia from `yaml` with start-up options (an in-memory span exporter).
    pub async fn try_start_with(yaml: &str, options: StartOptions) -> Result<TestGlia, StartError> {
        let config = Self::config(yaml).unwrap_or_else(|e| panic!("bad test config: {e}"));
        Ok(Self::serve(Arc::new(
            Glia::start_with(config, options).await?,
        )))
    }

    /// Serves a started `glia` over HTTP as `glia serve` does (with its limits and layers; one
    /// worker, no signal handling), on a free loopback port.
    pub fn serve(glia: Arc<Glia>) -> TestGlia {
        let bound =
            http::serve(glia.clone(), "127.0.0.1:0", Some(1)).expect("bind a loopback port");
        let handle = bound.server.handle();
        actix_rt::spawn(bound.server);
        TestGlia {
            glia,
            base_url: bound.urls,
            server: handle,
        }
    }

    /// Dispatches through the coordinator (no HTTP).
    pub async fn dispatch(&self, request: CallbackRequest) -> DispatchReply {
        let coordinator = self.glia.coordinator();
        coordinator
            .dispatch(request, coordinator.new_meta())
            .await
            .unwrap_or_else(|e| panic!("dispatch refused: {e}"))
    }

    /// Typed dispatch through the coordinator.
    pub async fn call<R: CallbackArgs>(&self, args: R) -> R::Reply {
        self.glia
            .coordinator()
            .call(args)
            .await
            .unwrap_or_else(|e| panic!("dispatch refused: {e}"))
    }

    /// Dispatches `args` (JSON) to `callback` and returns the reply as JSON.
    pub async fn dispatch_json(&self, callback: &str, args: Value) -> Value {
        let callback = callback.parse().expect("a callback name");
        let request = CallbackRequest::from_args(callback, args).expect("valid arguments");
        serde_json::to_value(self.dispatch(request).await).expect("replies serialise")
    }

    /// POSTs `body` to a path of the HTTP server; returns the status and the JSON body.
    pub async fn post(&self, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = awc::Client::default()
            .post(format!("{}{path}", self.base_url))
            .insert_header(("content-type", "application/json"));
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        let mut resp = req.send_body(body.to_owned()).await.expect("HTTP request");
        let bytes = resp.body().limit(16 << 20).await.expect("HTTP body");
        (
            resp.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// GETs a path of the HTTP server; returns the status and the JSON body.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = awc::Client::default().get(format!("{}{path}", self.base_url));
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        let mut resp = req.send().await.expect("HTTP request");
        let bytes = resp.body().limit(16 << 20).await.expect("HTTP body");
        (
            resp.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Stops the HTTP server and the modules.
    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

/// The `glia` binary: `$GLIA_BIN` if set (a load run against another build), else the one
/// of this build's profile — `target/debug/glia` for tests (`cargo build -p glia-runtime
/// --bin glia`; tests/run-all builds it), `target/release/glia` for `cargo bench`
/// (`cargo build --release -p glia-runtime --bin glia`).
pub fn glia_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("GLIA_BIN") {
        let path = std::path::PathBuf::from(path);
        assert!(path.exists(), "GLIA_BIN={} does not exist", path.display());
        return path;
    }
    let (profile, flag) = if cfg!(debug_assertions) {
        ("debug", "")
    } else {
        ("release", "--release ")
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(profile)
        .join("glia");
    assert!(
        path.exists(),
        "no glia binary at {}: run `cargo build {flag}-p glia-runtime --bin glia`",
        path.display()
    );
    path
}
