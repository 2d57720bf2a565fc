//! The `telemetry:` section: OTLP trace export, Prometheus metrics and the decision log.
//! Unset trace settings fall back to the standard `OTEL_*` environment variables (resolved
//! in `telemetry::export`), so the file wins where both speak.

use super::ConfigDuration;
use serde::Deserialize;
use std::path::PathBuf;

/// The NATS subject decision records go to unless `decision_log.subject` says otherwise.
pub const DEFAULT_DECISION_SUBJECT: &str = "glia.v1.decisions";
/// Decision records that may wait for the writer before new ones are dropped (and counted).
pub const DEFAULT_DECISION_BUFFER: usize = 10_000;
/// The largest `decision_log.buffer`: a million waiting records is already hundreds of
/// megabytes (and tokio's channels refuse more than `usize::MAX >> 3` outright).
pub const MAX_DECISION_BUFFER: usize = 1_000_000;

/// Everything under `telemetry:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The base of `service.name`; each process appends its role (`-coordinator`, `-worker`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// Span export.
    #[serde(default, deserialize_with = "null_is_default")]
    pub traces: TracesConfig,
    /// The Prometheus endpoint.
    #[serde(default, deserialize_with = "null_is_default")]
    pub metrics: MetricsConfig,
    /// One record per decision.
    #[serde(default, deserialize_with = "null_is_default")]
    pub decision_log: DecisionLogConfig,
}

/// `telemetry.traces`: where spans go.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// `otlp` or `none`; unset: `OTEL_TRACES_EXPORTER`, else `otlp` if an OTLP endpoint
    /// variable is set, else `none`.
    #[serde(default)]
    pub exporter: Option<TraceExporter>,
    /// `grpc` or `http/protobuf`; unset: `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`, else
    /// `http/protobuf` (the OTLP specification's default).
    #[serde(default)]
    pub protocol: Option<OtlpProtocol>,
    /// The collector's URL; unset: `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`, else localhost's
    /// standard port for the protocol.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The share of new traces recorded (0 to 1); a caller's sampling decision is kept.
    #[serde(default)]
    pub sample_ratio: Option<f64>,
    /// How long one export may take.
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    /// TLS files for an `https://` endpoint (as `bus.tls` names them for NATS).
    #[serde(default, deserialize_with = "null_is_default")]
    pub tls: OtlpTlsConfig,
}

/// `telemetry.traces.tls`: each file unset falls back to its `OTEL_*` variable.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpTlsConfig {
    /// The CA certificates (PEM) to trust instead of the system's; unset:
    /// `OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The certificate chain (PEM) glia presents to the collector (mutual TLS); unset:
    /// `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of `cert_file`; unset: `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Which span exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceExporter {
    /// OTLP to a collector.
    Otlp,
    /// No export: spans are not even recorded (the context is still passed on).
    None,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC, port 4317 by convention.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, port 4318 by convention.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// Reads the `OTEL_EXPORTER_OTLP_PROTOCOL` spelling.
    pub fn parse(text: &str) -> Option<OtlpProtocol> {
        match text.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }

    /// The `OTEL_EXPORTER_OTLP_PROTOCOL` spelling (what a Python host is told).
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// `telemetry.metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (on by default).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

/// A section left empty (`traces:` with only comments under it) means its defaults.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn yes() -> bool {
    true
}

/// `telemetry.decision_log`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogConfig {
    /// Where records go.
    #[serde(default)]
    pub output: DecisionOutput,
    /// The file, for `output: file` (appended to, one JSON object per line).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The subject, for `output: nats`.
    #[serde(default)]
    pub subject: Option<String>,
    /// Put the callback's arguments, the modules' answers and the reply's texts in records.
    /// Off by default: they carry message content, user ids and other personal data.
    #[serde(default)]
    pub include_content: bool,
    /// Records waiting for the writer before new ones are dropped (and counted in
    /// `glia_decision_log_dropped_total`), so a slow disk never slows decisions.
    #[serde(default)]
    pub buffer: Option<usize>,
    /// Parts of the arguments left out of records with content, besides the secrets that
    /// always are ([`ALWAYS_REDACTED`]): a key name (dropped at any depth, `body`) or a
    /// dotted path from the arguments (`event.content.body`).
    #[serde(default)]
    pub redact: Vec<String>,
}

/// Keys never written to the decision log, at any depth of the arguments: passwords,
/// tokens, login dicts.
pub const ALWAYS_REDACTED: &[&str] = &["password", "login_dict", "access_token", "renewal_token"];

impl Default for DecisionLogConfig {
    fn default() -> Self {
        DecisionLogConfig {
            output: DecisionOutput::None,
            path: None,
            subject: None,
            include_content: false,
            buffer: None,
            redact: Vec::new(),
        }
    }
}

/// Where decision records are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionOutput {
    /// Not written.
    #[default]
    None,
    /// Standard output, one JSON object per line (logs go to standard error).
    Stdout,
    /// Appended to `path`.
    File,
    /// Published on `subject` over the NATS bus's connection.
    Nats,
}

/// Whether an OTLP endpoint URL is `https` (`Some(true)`) or `http` (`Some(false)`), its
/// scheme in any case; `None` for anything else. The scheme decides whether TLS is used.
pub fn endpoint_is_https(url: &str) -> Option<bool> {
    let (scheme, _) = url.trim().split_once("://")?;
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(false),
        "https" => Some(true),
        _ => None,
    }
}

impl TelemetryConfig {
    /// Checks what serde cannot: returns the offending key (under `telemetry`) and why.
    pub fn check(&self, nats_bus: bool) -> Result<(), (&'static [&'static str], String)> {
        if let Some(ratio) = self.traces.sample_ratio {
            if !(0.0..=1.0).contains(&ratio) {
                return Err((
                    &["traces", "sample_ratio"],
                    "must be between 0 and 1".into(),
                ));
            }
        }
        if let Some(endpoint) = &self.traces.endpoint {
            if endpoint_is_https(endpoint).is_none() {
                return Err((
                    &["traces", "endpoint"],
                    format!("{endpoint:?} is not an http:// or https:// URL"),
                ));
            }
        }
        match (&self.traces.tls.cert_file, &self.traces.tls.key_file) {
            (Some(_), None) => {
                return Err((
                    &["traces", "tls", "cert_file"],
                    "needs `key_file:` (the certificate's private key) beside it".into(),
                ))
            }
            (None, Some(_)) => {
                return Err((
                    &["traces", "tls", "key_file"],
                    "needs `cert_file:` (the key's certificate) beside it".into(),
                ))
            }
            _ => {}
        }
        if let Some(name) = &self.service_name {
            if name.trim().is_empty() {
                return Err((&["service_name"], "must not be empty".into()));
            }
        }
        let log = &self.decision_log;
        if log
            .buffer
            .is_some_and(|b| !(1..=MAX_DECISION_BUFFER).contains(&b))
        {
            return Err((
                &["decision_log", "buffer"],
                format!("must be between 1 and {MAX_DECISION_BUFFER}"),
            ));
        }
        if log.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err((&["decision_log", "path"], "must not be empty".into()));
        }
        match log.output {
            DecisionOutput::File if log.path.is_none() => Err((
                &["decision_log", "path"],
                "output: file needs a `path:`".into(),
            )),
            DecisionOutput::Nats if !nats_bus => Err((
                &["decision_log", "output"],
                "output: nats needs the NATS bus (`bus: {type: nats, url: ...}`)".into(),
            )),
            DecisionOutput::Nats
                if log
                    .subject
                    .as_deref()
                    .is_some_and(|s| s.is_empty() || s.contains([' ', '*', '>'])) =>
            {
                Err((
                    &["decision_log", "subject"],
                    "must be a plain NATS subject (no spaces or wildcards)".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}
