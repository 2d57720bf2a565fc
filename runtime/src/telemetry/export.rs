//! Where spans go: the `telemetry.traces` settings merged with the standard `OTEL_*`
//! environment variables, and the OTLP tracer provider built from them.

use super::span_drops::{BackoffExporter, BoundedProcessor, ExportGate, SpanDrops};
use super::tls::{Origin, PemFile, TlsFiles, TlsMaterial};
use super::{Role, TelemetryError};
use crate::config::telemetry::{endpoint_is_https, OtlpProtocol, TraceExporter, TracesConfig};
use crate::python::HostVar;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT,
};
use opentelemetry_sdk::Resource;
use std::sync::Arc;
use std::time::Duration;

/// How long one export may take unless configured (the OTLP specification's default).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The resolved export settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// The transport.
    pub protocol: OtlpProtocol,
    /// The full URL spans are sent to.
    pub endpoint: String,
    /// How long one export may take.
    pub timeout: Duration,
    /// `Some(ratio)` to sample new traces; `None` keeps the SDK's default (which reads
    /// `OTEL_TRACES_SAMPLER`).
    pub sample_ratio: Option<f64>,
    /// The TLS files, for an `https://` endpoint.
    pub tls: TlsFiles,
}

/// Merges the file's settings with the environment (`env` reads a variable): the file wins,
/// then the signal-specific variable, then the general one, then the default. `None` means
/// spans are not exported.
pub fn resolve(
    config: &TracesConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<ExportSettings>, TelemetryError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if !export_enabled(config, &var)? {
        return Ok(None);
    }
    let protocol = otlp_protocol(config, &var)?;
    let endpoint = export_endpoint(config, protocol, &var)?;
    let timeout = export_timeout(config, &var)?;
    Ok(Some(ExportSettings {
        protocol,
        endpoint,
        timeout,
        sample_ratio: config.sample_ratio,
        tls: tls_files(config, &var),
    }))
}

/// Whether spans are exported: the file's `exporter`, else `OTEL_SDK_DISABLED`, else
/// `OTEL_TRACES_EXPORTER`, else whether an endpoint variable is set (naming a collector is
/// asking for export).
fn export_enabled(
    config: &TracesConfig,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<bool, TelemetryError> {
    Ok(match config.exporter {
        Some(TraceExporter::Otlp) => true,
        Some(TraceExporter::None) => false,
        None if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim() == "true") => false,
        None => match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            Some("otlp") => true,
            Some("none") => false,
            Some(other) => {
                return Err(TelemetryError::Setting(format!(
                    "OTEL_TRACES_EXPORTER={other:?}: glia exports spans with \"otlp\" or not at all (\"none\")"
                )))
            }
            None => {
                var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
                    || var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            }
        },
    })
}

/// The transport: the file's, else the signal's variable, else the general one, else
/// `http/protobuf` (the specification's default).
fn otlp_protocol(
    config: &TracesConfig,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<OtlpProtocol, TelemetryError> {
    Ok(match config.protocol {
        Some(p) => p,
        None => match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v))
            .or_else(|| {
                var("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL", v))
            }) {
            Some((name, value)) => OtlpProtocol::parse(&value).ok_or_else(|| {
                TelemetryError::Setting(format!(
                    "{name}={value:?}: glia speaks \"grpc\" and \"http/protobuf\""
                ))
            })?,
            None => OtlpProtocol::HttpProtobuf,
        },
    })
}

/// The URL spans go to for a `base` URL: a base URL (no path) gets the traces path over
/// HTTP, as the specification says for OTEL_EXPORTER_OTLP_ENDPOINT; a URL with a path, or
/// any gRPC one, is used as it is.
fn signal_path(protocol: OtlpProtocol, base: &str) -> String {
    match protocol {
        OtlpProtocol::Grpc => base.to_owned(),
        OtlpProtocol::HttpProtobuf => {
            let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
            match rest.find('/') {
                Some(i) if &rest[i..] != "/" => base.to_owned(),
                _ => format!("{}/v1/traces", base.trim_end_matches('/')),
            }
        }
    }
}

/// A URL variable, checked here (the file's URL was checked with the config), since the
/// scheme decides whether TLS is used.
fn url_var(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<String>, TelemetryError> {
    match var(name) {
        Some(url) if endpoint_is_https(&url).is_none() => Err(TelemetryError::Setting(format!(
            "{name}={url:?} is not an http:// or https:// URL"
        ))),
        other => Ok(other.map(|url| url.trim().to_owned())),
    }
}

/// The full URL spans are sent to: the file's, else the signal's variable as it is, else the
/// general one, else the local collector's default port for `protocol`.
fn export_endpoint(
    config: &TracesConfig,
    protocol: OtlpProtocol,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<String, TelemetryError> {
    Ok(
        match (
            &config.endpoint,
            url_var(var, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?,
        ) {
            (Some(url), _) => signal_path(protocol, url),
            (None, Some(url)) => url,
            (None, None) => match url_var(var, "OTEL_EXPORTER_OTLP_ENDPOINT")? {
                Some(url) => signal_path(protocol, &url),
                None => match protocol {
                    OtlpProtocol::Grpc => "http://localhost:4317".to_owned(),
                    OtlpProtocol::HttpProtobuf => "http://localhost:4318/v1/traces".to_owned(),
                },
            },
        },
    )
}

/// How long one export may take: the file's, else a variable's milliseconds, else the
/// specification's default.
fn export_timeout(
    config: &TracesConfig,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Duration, TelemetryError> {
    Ok(match config.timeout {
        Some(d) => d.0,
        None => match var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
        {
            Some(ms) => Duration::from_millis(ms.trim().parse().map_err(|_| {
                TelemetryError::Setting(format!(
                    "OTEL_EXPORTER_OTLP_TIMEOUT={ms:?} is not a number of milliseconds"
                ))
            })?),
            None => DEFAULT_EXPORT_TIMEOUT,
        },
    })
}

/// The TLS files, each named with where it came from so an error about it can say which
/// key or variable to fix.
fn tls_files(config: &TracesConfig, var: &impl Fn(&str) -> Option<String>) -> TlsFiles {
    // Each file: the config key, else the signal's variable, else the general one.
    let pem = |configured: &Option<std::path::PathBuf>, key: &str, suffix: &str| {
        if let Some(path) = configured {
            return Some(PemFile {
                path: path.clone(),
                origin: Origin::Key(format!("telemetry.traces.tls.{key}")),
            });
        }
        [
            format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}"),
            format!("OTEL_EXPORTER_OTLP_{suffix}"),
        ]
        .into_iter()
        .find_map(|name| {
            var(&name).map(|path| PemFile {
                path: path.trim().into(),
                origin: Origin::Variable(name),
            })
        })
    };
    TlsFiles {
        ca: pem(&config.tls.ca_file, "ca_file", "CERTIFICATE"),
        cert: pem(&config.tls.cert_file, "cert_file", "CLIENT_CERTIFICATE"),
        key: pem(&config.tls.key_file, "key_file", "CLIENT_KEY"),
    }
}

impl ExportSettings {
    /// The TLS material an `https://` endpoint uses, read and checked; `None` for `http://`,
    /// whose TLS files are ignored (the OTEL_* variables may be set for every service on a
    /// host), with a warning.
    pub fn tls_material(&self) -> Result<Option<TlsMaterial>, TelemetryError> {
        if endpoint_is_https(&self.endpoint) == Some(true) {
            return TlsMaterial::load(&self.tls).map(Some);
        }
        if self.tls.any() {
            tracing::warn!(
                endpoint = %self.endpoint,
                "TLS files are set but the OTLP endpoint is not https://; they are not used"
            );
        }
        Ok(None)
    }
}

/// The blocking HTTP client spans go through, speaking TLS as `tls` says (else trusting the
/// system's roots). Always glia's own: reqwest is built without a crypto provider, so a
/// client it configured itself would need a process-wide default installed. Built on a thread
/// of its own, as the exporter builds its default one: reqwest's blocking client must not be
/// made in async code.
fn http_client(
    tls: Option<&TlsMaterial>,
    endpoint: &str,
    timeout: Duration,
) -> Result<ExplainedClient, TelemetryError> {
    let config = match tls {
        Some(tls) => tls.rustls(),
        None => super::tls::plain_rustls(),
    };
    let client = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(config)
            .timeout(timeout)
            .build()
    })
    .join()
    .map_err(|_| TelemetryError::Setting("building the HTTP client panicked".into()))?
    .map_err(|e| TelemetryError::Setting(format!("cannot build the HTTP client: {e}")))?;
    Ok(ExplainedClient {
        client,
        endpoint: endpoint.to_owned(),
    })
}

/// The HTTP exporter's client, which logs why a request failed: the exporter itself reports
/// only "network error", hiding a refused connection, a timeout or a certificate the
/// collector's CA did not sign.
#[derive(Debug)]
struct ExplainedClient {
    client: reqwest::blocking::Client,
    endpoint: String,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExplainedClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let result = self.client.send_bytes(request).await;
        if let Err(e) = &result {
            let mut why = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                why.push_str(": ");
                why.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::warn!(endpoint = %self.endpoint, error = %why, "cannot send spans to the OTLP collector");
        }
        result
    }
}

/// `service.name`: the file's base name plus the role, else `OTEL_SERVICE_NAME` as it is,
/// else `glia-<role>`.
pub fn service_name(
    configured: Option<&str>,
    role: Role,
    env: impl Fn(&str) -> Option<String>,
) -> String {
    match configured {
        Some(base) => format!("{base}-{}", role.as_str()),
        None => env("OTEL_SERVICE_NAME")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| format!("glia-{}", role.as_str())),
    }
}

/// The environment of the Python hosts this process starts, so that they export their spans
/// as `settings` say (`None`: they export none, whatever the inherited variables say), named
/// `service_name`. The standard variables, since the host's OpenTelemetry SDK reads them;
/// the timeout in milliseconds, as the specification says (the host converts it).
pub fn host_vars(settings: Option<&ExportSettings>, service_name: String) -> Vec<HostVar> {
    let Some(settings) = settings else {
        return vec![("OTEL_SDK_DISABLED", Some("true".into()))];
    };
    let mut vars: Vec<HostVar> = vec![
        ("OTEL_SDK_DISABLED", None),
        ("OTEL_TRACES_EXPORTER", Some("otlp".into())),
        (
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            Some(settings.protocol.as_str().into()),
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            Some(settings.endpoint.clone()),
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            Some(settings.timeout.as_millis().to_string()),
        ),
        ("OTEL_SERVICE_NAME", Some(service_name)),
    ];
    if let Some(ratio) = settings.sample_ratio {
        vars.push((
            "OTEL_TRACES_SAMPLER",
            Some("parentbased_traceidratio".into()),
        ));
        vars.push(("OTEL_TRACES_SAMPLER_ARG", Some(ratio.to_string())));
    }
    // The TLS files glia uses, only where it uses them (an https:// endpoint).
    if endpoint_is_https(&settings.endpoint) == Some(true) {
        let files = [
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &settings.tls.ca),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                &settings.tls.cert,
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", &settings.tls.key),
        ];
        for (name, file) in files {
            if let Some(file) = file {
                vars.push((name, Some(file.path.display().to_string())));
            }
        }
    }
    vars
}

/// What `glia check-config` can check beyond the file: the export settings as the
/// environment completes them, and the TLS files an `https://` endpoint would use, read and
/// checked as [`provider`] reads them at start.
pub fn check(
    config: &TracesConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), TelemetryError> {
    match resolve(config, env)? {
        Some(settings) => settings.tls_material().map(drop),
        None => Ok(()),
    }
}

/// Builds a tracer provider exporting in batches through OTLP, backing off while the
/// collector is down and counting lost spans into `drops` (`span_drops.rs`). Call it on a
/// thread with the export runtime entered and no other runtime (the tonic channel spawns its
/// tasks on the entered runtime; reqwest's blocking client must not be built inside async
/// code).
pub fn provider(
    settings: &ExportSettings,
    service_name: String,
    role: Role,
    drops: Arc<SpanDrops>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let tls = settings.tls_material()?;
    let built = match settings.protocol {
        OtlpProtocol::Grpc => {
            let builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout);
            match &tls {
                Some(tls) => builder.with_tls_config(tls.tonic()).build(),
                None => builder.build(),
            }
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .with_http_client(http_client(
                tls.as_ref(),
                &settings.endpoint,
                settings.timeout,
            )?)
            .build(),
    };
    let exporter = built.map_err(|e| {
        TelemetryError::Setting(format!(
            "cannot build the OTLP exporter for {}: {e}",
            settings.endpoint
        ))
    })?;
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attribute(KeyValue::new("glia.role", role.as_str()))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // The batch processor's queue size, as it reads it, so the bounded processor in front
    // drops (and counts) exactly where the batch processor would have dropped silently.
    let capacity = std::env::var(OTEL_BSP_MAX_QUEUE_SIZE)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT);
    let gate = ExportGate::new(drops, capacity);
    let exporter = BackoffExporter::new(exporter, gate.clone(), settings.endpoint.clone());
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(capacity)
                .build(),
        )
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_span_processor(BoundedProcessor::new(batches, gate))
        .with_resource(resource);
    if let Some(ratio) = settings.sample_ratio {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDuration;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn otlp() -> TracesConfig {
        TracesConfig {
            exporter: Some(TraceExporter::Otlp),
            ..TracesConfig::default()
        }
    }

    #[test]
    fn off_unless_asked() {
        assert_eq!(resolve(&TracesConfig::default(), env(&[])).unwrap(), None);
        let none = TracesConfig {
            exporter: Some(TraceExporter::None),
            ..TracesConfig::default()
        };
        let endpoint = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        assert_eq!(resolve(&none, env(&endpoint)).unwrap(), None);
        assert!(resolve(&TracesConfig::default(), env(&endpoint))
            .unwrap()
            .is_some());
        let disabled = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(
            resolve(&TracesConfig::default(), env(&disabled)).unwrap(),
            None
        );
        assert!(resolve(
            &TracesConfig::default(),
            env(&[("OTEL_TRACES_EXPORTER", "zipkin")])
        )
        .is_err());
    }

    #[test]
    fn defaults_follow_the_specification() {
        let s = resolve(&otlp(), env(&[])).unwrap().unwrap();
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(s.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(s.timeout, DEFAULT_EXPORT_TIMEOUT);
        let grpc = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        let s = resolve(&otlp(), env(&grpc)).unwrap().unwrap();
        assert_eq!(
            (s.protocol, s.endpoint.as_str()),
            (OtlpProtocol::Grpc, "http://localhost:4317")
        );
    }

    #[test]
    fn the_file_wins_then_the_signal_variable_then_the_general_one() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ];
        let s = resolve(&otlp(), env(&vars)).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://general:4318/v1/traces");
        assert_eq!(s.timeout, Duration::from_millis(2500));
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://signal:4318/custom",
            ),
        ];
        let s = resolve(&otlp(), env(&vars)).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://signal:4318/custom");
        let file = TracesConfig {
            endpoint: Some("http://file:4318/".into()),
            protocol: Some(OtlpProtocol::HttpProtobuf),
            timeout: Some(ConfigDuration(Duration::from_secs(1))),
            ..otlp()
        };
        let s = resolve(&file, env(&vars)).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://file:4318/v1/traces");
        assert_eq!(s.timeout, Duration::from_secs(1));
        let grpc = TracesConfig {
            endpoint: Some("http://file:4317".into()),
            protocol: Some(OtlpProtocol::Grpc),
            ..otlp()
        };
        let s = resolve(&grpc, env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "bogus")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://file:4317");
        assert!(resolve(&otlp(), env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "bogus")])).is_err());
    }

    #[test]
    fn tls_files_come_from_the_file_then_the_signal_variable_then_the_general_one() {
        let s = resolve(&otlp(), env(&[])).unwrap().unwrap();
        assert_eq!(s.tls, TlsFiles::default());
        let vars = [
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/general/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/signal/ca.pem"),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                " /general/client.pem ",
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/general/client.key"),
        ];
        let s = resolve(&otlp(), env(&vars)).unwrap().unwrap();
        let file = |path: &str, origin: Origin| {
            Some(PemFile {
                path: path.into(),
                origin,
            })
        };
        let var = |name: &str| Origin::Variable(name.into());
        assert_eq!(
            s.tls,
            TlsFiles {
                ca: file(
                    "/signal/ca.pem",
                    var("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
                ),
                cert: file(
                    "/general/client.pem",
                    var("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
                ),
                key: file("/general/client.key", var("OTEL_EXPORTER_OTLP_CLIENT_KEY")),
            }
        );
        let configured = TracesConfig {
            tls: crate::config::telemetry::OtlpTlsConfig {
                key_file: Some("/file/client.key".into()),
                ..Default::default()
            },
            ..otlp()
        };
        let s = resolve(&configured, env(&vars)).unwrap().unwrap();
        assert_eq!(
            s.tls.key,
            file(
                "/file/client.key",
                Origin::Key("telemetry.traces.tls.key_file".into())
            )
        );
    }

    #[test]
    fn an_endpoint_variable_must_be_an_http_url_in_any_case() {
        for bad in ["collector:4317", "grpc://collector:4317"] {
            let error = resolve(&otlp(), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]))
                .unwrap_err()
                .to_string();
            assert!(error.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{error}");
        }
        let s = resolve(
            &otlp(),
            env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "HTTPS://c:4318/v1/traces",
            )]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(endpoint_is_https(&s.endpoint), Some(true));
        assert_eq!(endpoint_is_https("http://c"), Some(false));
    }

    #[test]
    fn python_hosts_are_told_glias_settings_in_the_standard_variables() {
        let vars = |settings: Option<&ExportSettings>| -> HashMap<&str, Option<String>> {
            host_vars(settings, "hs1-python-host".into())
                .into_iter()
                .collect()
        };
        let off = vars(None);
        assert_eq!(off["OTEL_SDK_DISABLED"].as_deref(), Some("true"));
        assert!(!off.contains_key("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
        let grpc = TracesConfig {
            endpoint: Some("https://collector:4317".into()),
            protocol: Some(OtlpProtocol::Grpc),
            sample_ratio: Some(0.25),
            tls: crate::config::telemetry::OtlpTlsConfig {
                ca_file: Some("/etc/ca.pem".into()),
                ..Default::default()
            },
            ..otlp()
        };
        let settings = resolve(&grpc, env(&[("OTEL_SDK_DISABLED", "true")]))
            .unwrap()
            .unwrap();
        let on = vars(Some(&settings));
        let value = |name: &str| on[name].as_deref();
        assert_eq!(on["OTEL_SDK_DISABLED"], None, "removed: glia's file wins");
        assert_eq!(value("OTEL_TRACES_EXPORTER"), Some("otlp"));
        assert_eq!(value("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), Some("grpc"));
        assert_eq!(
            value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            Some("https://collector:4317")
        );
        assert_eq!(value("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"), Some("10000"));
        assert_eq!(value("OTEL_SERVICE_NAME"), Some("hs1-python-host"));
        assert_eq!(
            value("OTEL_TRACES_SAMPLER"),
            Some("parentbased_traceidratio")
        );
        assert_eq!(value("OTEL_TRACES_SAMPLER_ARG"), Some("0.25"));
        assert_eq!(
            value("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"),
            Some("/etc/ca.pem")
        );
        assert!(!on.contains_key("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"));
        let plain = resolve(
            &otlp(),
            env(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem")]),
        )
        .unwrap()
        .unwrap();
        let plain = vars(Some(&plain));
        assert!(!plain.contains_key("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"));
        assert!(!plain.contains_key("OTEL_TRACES_SAMPLER"));
    }

    #[test]
    fn service_names_carry_the_role() {
        assert_eq!(
            service_name(None, Role::Coordinator, env(&[])),
            "glia-coordinator"
        );
        assert_eq!(
            service_name(
                Some("hs1"),
                Role::Worker,
                env(&[("OTEL_SERVICE_NAME", "x")])
            ),
            "hs1-worker"
        );
        assert_eq!(
            service_name(None, Role::Worker, env(&[("OTEL_SERVICE_NAME", "x")])),
            "x"
        );
        assert_eq!(
            service_name(Some("hs1"), Role::PythonHost, env(&[])),
            "hs1-python-host"
        );
    }
}
