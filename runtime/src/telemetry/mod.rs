//! Traces, metrics and the decision log: everything glia tells about its decisions.
//!
//! One [`Telemetry`] per process. The coordinator opens a `DispatchTrace` per dispatch
//! (`coordinator/trace.rs`: a span, its invocation spans, metrics and a decision record);
//! workers open a span per invocation they serve (`WorkerSpan`). Spans are made with the OpenTelemetry API
//! directly rather than through `tracing`, so the context travels explicitly with each
//! invocation across actor threads and NATS, and costs nothing when export is off.

pub mod decision_log;
pub mod export;
pub mod metrics;
pub mod outcome;
pub mod span_drops;
pub mod tls;

pub use decision_log::{DecisionLog, DecisionRecord};
pub use metrics::{Metrics, ModuleGauge};
pub use outcome::{Outcome, ReplyResult};
pub use span_drops::{DropReason, SpanDrops};

use crate::config::{Fault, TelemetryConfig};
use glia_module_api::ConfigPath;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::sync::Arc;
use std::time::Instant;

/// A telemetry setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    /// A setting (from the environment, or not tied to one key) is wrong.
    #[error("telemetry: {0}")]
    Setting(String),
    /// A key of the config file is wrong: `key` is its path (`telemetry.decision_log.path`),
    /// so a config error can give its line.
    #[error("telemetry: key `{key}`: {message}")]
    Key {
        /// The key's path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Spans could not be delivered to the collector.
    #[error("telemetry: cannot export spans: {0}")]
    Export(String),
}

/// A telemetry error as a config fault: at its key; one from the environment at the
/// section it completes.
pub fn fault(e: TelemetryError) -> Fault {
    match e {
        TelemetryError::Key { key, message } => Fault::new(ConfigPath::parse(&key), message),
        TelemetryError::Setting(message) | TelemetryError::Export(message) => {
            Fault::new(ConfigPath::root().key("telemetry"), message)
        }
    }
}

/// Which kind of glia process this is; it names the service in traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `glia serve`: the coordinator.
    Coordinator,
    /// `glia worker`: hosts modules on NATS.
    Worker,
    /// A Python host (`glia_python_host`) glia started: it names the host's spans.
    PythonHost,
}

impl Role {
    /// `coordinator` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
            Role::PythonHost => "python-host",
        }
    }
}

/// The tracer, the metrics and the decision log of one process.
pub struct Telemetry {
    tracer: Option<SdkTracer>,
    provider: Option<SdkTracerProvider>,
    export_runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    metrics: Option<Metrics>,
    decisions: Option<DecisionLog>,
    span_drops: Arc<SpanDrops>,
    role: Role,
}

/// What [`Telemetry::assemble`] puts together.
#[derive(Default)]
pub struct TelemetryParts {
    /// Spans go to this provider's exporter (`None`: no spans are recorded).
    pub provider: Option<SdkTracerProvider>,
    /// Served at `/metrics` (`None`: not collected).
    pub metrics: Option<Metrics>,
    /// Where decision records go.
    pub decisions: Option<DecisionLog>,
}

impl Telemetry {
    /// Nothing recorded: what a library user gets by default.
    pub fn disabled(role: Role) -> Telemetry {
        Telemetry::assemble(role, TelemetryParts::default())
    }

    /// Telemetry from ready parts (tests bring an in-memory span exporter this way).
    pub fn assemble(role: Role, parts: TelemetryParts) -> Telemetry {
        Telemetry {
            tracer: parts.provider.as_ref().map(|p| p.tracer("glia")),
            provider: parts.provider,
            export_runtime: std::sync::Mutex::new(None),
            metrics: parts.metrics,
            decisions: parts.decisions,
            span_drops: Arc::default(),
            role,
        }
    }

    /// What `glia check-config` checks beyond the file itself, without starting anything:
    /// the OTLP TLS files (as the environment completes the settings) and the decision log's
    /// file, each as `start` would open it.
    pub fn check(
        config: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), TelemetryError> {
        export::check(&config.traces, env)?;
        decision_log::check_path(&config.decision_log)
    }

    /// Builds what `config` (and the `OTEL_*` environment) asks for. `modules` counts the
    /// config's modules and `gauges` are those whose supervisors this process runs, for the
    /// metrics; `nats` is the bus's connection, for a decision log on NATS; `provider`, if
    /// given, replaces the configured exporter. Without one, it also tells the Python hosts
    /// this process starts to export as it does (`export::host_vars`). Call within a tokio
    /// runtime.
    pub fn start(
        config: &TelemetryConfig,
        role: Role,
        modules: usize,
        gauges: Vec<ModuleGauge>,
        nats: Option<async_nats::Client>,
        provider: Option<SdkTracerProvider>,
    ) -> Result<Telemetry, TelemetryError> {
        let env = |name: &str| std::env::var(name).ok();
        let given = provider.is_some();
        let mut telemetry = Telemetry::assemble(
            role,
            TelemetryParts {
                provider,
                metrics: config
                    .metrics
                    .enabled
                    .then(|| Metrics::new(modules, gauges)),
                decisions: DecisionLog::start(&config.decision_log, nats)?,
            },
        );
        if given {
            return Ok(telemetry);
        }
        let resolved = export::resolve(&config.traces, env)?;
        let host_name = export::service_name(config.service_name.as_deref(), Role::PythonHost, env);
        crate::python::export_traces_with(export::host_vars(resolved.as_ref(), host_name));
        if let Some(settings) = resolved {
            let name = export::service_name(config.service_name.as_deref(), role, env);
            // The exporter gets a runtime of its own: the tonic channel's tasks must keep
            // running while the process's own runtime is busy or shutting down, and reqwest's
            // blocking client must not be built inside async code.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("glia-otlp")
                .enable_all()
                .build()
                .map_err(|e| TelemetryError::Setting(format!("cannot start the exporter: {e}")))?;
            let handle = runtime.handle().clone();
            let drops = telemetry.span_drops.clone();
            let built = std::thread::spawn(move || {
                let _entered = handle.enter();
                export::provider(&settings, name, role, drops).map(|p| (p, settings))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(TelemetryError::Setting(
                    "the exporter panicked while starting".into(),
                ))
            });
            let provider = match built {
                Ok(provider) => provider,
                Err(e) => {
                    // Dropping a runtime blocks, which async code (our caller) must not do.
                    runtime.shutdown_background();
                    return Err(e);
                }
            };
            tracing::info!(
                endpoint = %provider.1.endpoint,
                protocol = ?provider.1.protocol,
                role = role.as_str(),
                "exporting spans over OTLP"
            );
            if let Some(metrics) = &mut telemetry.metrics {
                metrics.count_span_drops(telemetry.span_drops.clone());
            }
            telemetry.tracer = Some(provider.0.tracer("glia"));
            telemetry.provider = Some(provider.0);
            telemetry.export_runtime = std::sync::Mutex::new(Some(runtime));
        }
        Ok(telemetry)
    }

    /// The process's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The tracer, when spans are recorded.
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.tracer.as_ref()
    }

    /// The metrics, when collected.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// The decision log, when written.
    pub fn decisions(&self) -> Option<&DecisionLog> {
        self.decisions.as_ref()
    }

    /// Exports the spans still buffered now, and says whether the collector took them (tests
    /// read them right after).
    pub async fn flush(&self) -> Result<(), TelemetryError> {
        let Some(provider) = self.provider.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .map_err(|e| TelemetryError::Export(e.to_string()))?
            .map_err(|e| TelemetryError::Export(e.to_string()))
    }

    /// Spans dropped so far, by reason (`glia_spans_dropped_total`).
    pub fn span_drops(&self) -> &Arc<SpanDrops> {
        &self.span_drops
    }

    /// Flushes spans and decision records, then stops the exporter and the writer, giving
    /// the spans until `until` (what is left of the shutdown grace): a collector that does
    /// not answer must not hold the process past it. Spans still open (a dispatch that never
    /// finished) are lost; finished ones are not, unless the collector cannot take them in
    /// time.
    pub async fn shutdown(&self, until: Instant) {
        if let Some(log) = &self.decisions {
            log.close().await;
        }
        let Some(provider) = self.provider.clone() else {
            return;
        };
        let runtime = self
            .export_runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let left = until.saturating_duration_since(Instant::now());
        let (done, flushed) = futures::channel::oneshot::channel();
        // A thread of its own, not `spawn_blocking`: a runtime waits for its blocking tasks
        // when it is dropped, and this one may outlive the grace.
        let spawned = std::thread::Builder::new()
            .name("glia-otlp-flush".into())
            .spawn(move || {
                if let Err(e) = provider.force_flush() {
                    tracing::warn!(error = %e, "cannot flush spans");
                }
                let _ = provider.shutdown_with_timeout(left);
                if let Some(runtime) = runtime {
                    runtime.shutdown_background();
                }
                let _ = done.send(());
            });
        if spawned.is_err() {
            return;
        }
        if tokio::time::timeout(left, flushed).await.is_err() {
            tracing::warn!(
                grace_left_ms = left.as_millis() as u64,
                "the OTLP collector did not take the last spans within the shutdown grace; leaving them"
            );
        }
    }
}

impl Drop for Telemetry {
    /// Without [`Telemetry::shutdown`] (a failed start): the provider goes first, while its
    /// runtime still runs, and the runtime is then left to stop in the background (dropping
    /// it outright panics inside async code).
    fn drop(&mut self) {
        self.tracer = None;
        self.provider = None;
        if let Some(runtime) = self
            .export_runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            runtime.shutdown_background();
        }
    }
}
