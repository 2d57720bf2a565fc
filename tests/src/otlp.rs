//! A real OpenTelemetry trace receiver for tests: OTLP/gRPC (tonic) and OTLP/HTTP
//! (`POST /v1/traces`, protobuf or JSON, on actix-web) on loopback ports, recording every span
//! it is sent; in plain text, or over TLS (optionally requiring client certificates). It runs
//! on a thread and tokio runtime of its own, so it works the same under `#[tokio::test]`,
//! `#[actix_rt::test]` or no runtime at all, and stops when dropped.

use actix_web::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tonic::codec::CompressionEncoding;

/// The largest export request either endpoint accepts (the exporter's own default limit).
const MAX_REQUEST: usize = 64 * 1024 * 1024;

/// One span as the receiver got it, flattened for assertions.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// The resource attribute `service.name` ("" when absent).
    pub service_name: String,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The parent's span id, `None` for a root span.
    pub parent_span_id: Option<String>,
    /// The span's name.
    pub name: String,
    /// "internal", "server", "client", "producer", "consumer" or "unspecified".
    pub kind: String,
    /// The span's attributes; strings as they are, bools and numbers by `to_string`.
    pub attributes: BTreeMap<String, String>,
    /// The span's events: name and attributes.
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// "unset", "ok" or "error".
    pub status_code: String,
    /// The status description ("" when none).
    pub status_message: String,
    /// "grpc" or "http": the endpoint the span came in on.
    pub protocol: &'static str,
}

impl ReceivedSpan {
    /// The attribute `key`, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

impl fmt::Display for ReceivedSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {} {:?} kind={} trace={} span={} parent={} status={}",
            self.protocol,
            self.service_name,
            self.name,
            self.kind,
            self.trace_id,
            self.span_id,
            self.parent_span_id.as_deref().unwrap_or("-"),
            self.status_code,
        )?;
        if !self.status_message.is_empty() {
            write!(f, "({:?})", self.status_message)?;
        }
        write!(f, " attributes={:?}", self.attributes)?;
        for (name, attributes) in &self.events {
            write!(f, " event {name:?} {attributes:?}")?;
        }
        Ok(())
    }
}

/// What both endpoints record into.
#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    /// Requests that were refused, with why: a wrong path, content type or an undecodable body.
    rejected: Vec<String>,
}

struct Shared {
    received: Mutex<Received>,
    /// Bumped after every change to `received`, to wake waiters.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            received: Mutex::new(Received::default()),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, request: ExportTraceServiceRequest, protocol: &'static str) {
        let spans = flatten(request, protocol);
        self.lock().spans.extend(spans);
        self.changed.send_modify(|n| *n += 1);
    }

    fn reject(&self, why: String) {
        self.lock().rejected.push(why);
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The receiver's TLS mode: both endpoints serve only TLS.
#[derive(Clone, Debug)]
pub struct ReceiverTls {
    /// The receiver's certificate chain, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca_pem: Option<String>,
}

/// A running OTLP trace receiver; dropping it stops both servers.
pub struct OtlpReceiver {
    shared: Arc<Shared>,
    grpc: SocketAddr,
    http: SocketAddr,
    /// "http" or "https".
    scheme: &'static str,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Binds both endpoints on free loopback ports and starts serving; needs no runtime.
    pub fn start() -> io::Result<OtlpReceiver> {
        Self::start_with(None)
    }

    /// [`OtlpReceiver::start`], serving only TLS on both endpoints.
    pub fn start_tls(tls: ReceiverTls) -> io::Result<OtlpReceiver> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<ReceiverTls>) -> io::Result<OtlpReceiver> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let grpc_listener = TcpListener::bind("127.0.0.1:0")?;
        let http_listener = TcpListener::bind("127.0.0.1:0")?;
        grpc_listener.set_nonblocking(true)?;
        http_listener.set_nonblocking(true)?;
        let grpc = grpc_listener.local_addr()?;
        let http = http_listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn({
                let shared = shared.clone();
                move || serve(shared, grpc_listener, http_listener, tls, ready_tx, stop_rx)
            })?;
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the OTLP receiver thread died")));
        if let Err(e) = ready {
            let _ = thread.join();
            return Err(e);
        }
        Ok(OtlpReceiver {
            shared,
            grpc,
            http,
            scheme,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The OTLP/gRPC endpoint, `http://127.0.0.1:PORT` (`https://` in TLS mode).
    pub fn grpc_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.grpc)
    }

    /// The OTLP/HTTP base URL, `http://127.0.0.1:PORT` (`https://` in TLS mode); traces go to
    /// `POST {base}/v1/traces`.
    pub fn http_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.http)
    }

    /// The OTLP/HTTP traces URL, `http://127.0.0.1:PORT/v1/traces` (`https://` in TLS mode).
    pub fn http_traces_url(&self) -> String {
        format!("{}/v1/traces", self.http_endpoint())
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.lock().spans.clone()
    }

    /// Every refused request so far (wrong path or content type, undecodable body), described.
    pub fn rejected(&self) -> Vec<String> {
        self.shared.lock().rejected.clone()
    }

    /// Waits until `pred` holds for the spans received; panics listing them after `timeout`.
    ///
    /// Needs a tokio-based runtime (`#[tokio::test]`, `#[actix_rt::test]`); it yields while
    /// waiting, so exporters whose connections live on the caller's runtime keep working.
    pub async fn wait_for_spans(
        &self,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.shared.changed.subscribe();
        loop {
            let spans = self.spans();
            if pred(&spans) {
                return spans;
            }
            // The sender lives as long as `self`, so `changed()` only ends by a change.
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                self.timed_out(timeout);
            }
        }
    }

    /// [`OtlpReceiver::wait_for_spans`] for code outside any runtime; blocks the thread.
    #[track_caller]
    pub fn wait_for_spans_blocking(
        &self,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if pred(&spans) {
                return spans;
            }
            if Instant::now() >= deadline {
                self.timed_out(timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[track_caller]
    fn timed_out(&self, timeout: Duration) -> ! {
        let received = self.shared.lock();
        let mut message = format!(
            "the OTLP receiver did not get the expected spans within {timeout:?}; it got {}:",
            received.spans.len()
        );
        for span in &received.spans {
            message.push_str(&format!("\n  {span}"));
        }
        if !received.rejected.is_empty() {
            message.push_str("\nand refused these requests:");
            for why in &received.rejected {
                message.push_str(&format!("\n  {why}"));
            }
        }
        drop(received);
        panic!("{message}");
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The receiver thread: both servers on one runtime until told to stop.
fn serve(
    shared: Arc<Shared>,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    tls: Option<ReceiverTls>,
    ready: std::sync::mpsc::Sender<io::Result<()>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("otlp-receiver-rt")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        let grpc_listener = match tokio::net::TcpListener::from_std(grpc_listener) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let service = TraceServiceServer::new(GrpcTraces(shared.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_REQUEST);
        let mut grpc_server = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            grpc_server = match grpc_server.tls_config(grpc_tls(tls)) {
                Ok(server) => server,
                Err(e) => {
                    let _ = ready.send(Err(io::Error::other(e)));
                    return;
                }
            };
        }
        let grpc = tokio::spawn(grpc_server.serve_with_incoming(
            service,
            tonic::transport::server::TcpIncoming::from(grpc_listener),
        ));

        let data = web::Data::from(shared);
        let http = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_REQUEST))
                .route("/v1/traces", web::post().to(http_traces))
                .default_service(web::to(http_other))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);
        let http = match &tls {
            None => http.listen(http_listener),
            Some(tls) => {
                http_tls(tls).and_then(|config| http.listen_rustls_0_23(http_listener, config))
            }
        };
        let http = match http {
            Ok(server) => server.run(),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let http_handle = http.handle();
        let _ = ready.send(Ok(()));

        let stopping = async {
            // A send from `Drop`, or the receiver gone without one: stop either way.
            let _ = stop.await;
            http_handle.stop(false).await;
            // Not a graceful stop: that would wait for clients to acknowledge, and a client's
            // runtime may be the very thread blocked in `Drop`. Dropping the runtime below
            // closes the connections.
            grpc.abort();
        };
        let _ = tokio::join!(http, stopping);
    });
    // Returns as soon as the workers have dropped their tasks, which they do at once.
    runtime.shutdown_timeout(Duration::from_secs(5));
}

/// The gRPC endpoint's TLS settings.
fn grpc_tls(tls: &ReceiverTls) -> tonic::transport::ServerTlsConfig {
    let config = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
    );
    match &tls.client_ca_pem {
        Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
        None => config,
    }
}

/// The HTTP endpoint's TLS settings (rustls on ring, as tonic's).
fn http_tls(tls: &ReceiverTls) -> io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |e: &dyn fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| invalid(&e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?;
    let builder = match &tls.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots
                    .add(cert.map_err(|e| invalid(&e))?)
                    .map_err(|e| invalid(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| invalid(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid(&e))
}

/// `opentelemetry.proto.collector.trace.v1.TraceService`.
struct GrpcTraces(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.record(request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// `POST /v1/traces`: an `ExportTraceServiceRequest` as protobuf or OTLP/JSON.
async fn http_traces(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = request
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|e| format!(", content-encoding {e}"))
        .unwrap_or_default();
    match media_type.as_str() {
        "application/x-protobuf" => match ExportTraceServiceRequest::decode(body.as_ref()) {
            Ok(export) => {
                shared.record(export, "http");
                HttpResponse::Ok()
                    .content_type("application/x-protobuf")
                    .body(
                        ExportTraceServiceResponse {
                            partial_success: None,
                        }
                        .encode_to_vec(),
                    )
            }
            Err(e) => bad_request(&shared, &content_type, &encoding, body.len(), &e),
        },
        "application/json" => match serde_json::from_slice::<ExportTraceServiceRequest>(&body) {
            Ok(export) => {
                shared.record(export, "http");
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body("{}")
            }
            Err(e) => bad_request(&shared, &content_type, &encoding, body.len(), &e),
        },
        _ => {
            shared.reject(format!(
                "POST /v1/traces: unsupported content type {content_type:?} (415)"
            ));
            HttpResponse::UnsupportedMediaType().body(format!(
                "content type {content_type:?}: OTLP/HTTP takes application/x-protobuf or \
                 application/json\n"
            ))
        }
    }
}

fn bad_request(
    shared: &Shared,
    content_type: &str,
    encoding: &str,
    len: usize,
    error: &dyn fmt::Display,
) -> HttpResponse {
    shared.reject(format!(
        "POST /v1/traces: {len} bytes of {content_type}{encoding} not decodable: {error} (400)"
    ));
    HttpResponse::BadRequest().body(format!("not an ExportTraceServiceRequest: {error}\n"))
}

/// Anything but `POST /v1/traces`, such as an exporter given the base URL as its full endpoint.
async fn http_other(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let status = if request.path() == "/v1/traces" {
        HttpResponse::MethodNotAllowed()
    } else {
        HttpResponse::NotFound()
    }
    .finish()
    .status();
    shared.reject(format!(
        "{} {}: only POST /v1/traces is served ({})",
        request.method(),
        request.path(),
        status.as_u16()
    ));
    HttpResponse::build(status).body("OTLP/HTTP traces go to POST /v1/traces\n")
}

/// One `ReceivedSpan` per span in the request.
fn flatten(request: ExportTraceServiceRequest, protocol: &'static str) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(|kv| render_value(kv.value.as_ref()))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                out.push(received(span, &service_name, protocol));
            }
        }
    }
    out
}

fn received(span: Span, service_name: &str, protocol: &'static str) -> ReceivedSpan {
    let kind = match SpanKind::try_from(span.kind) {
        Ok(SpanKind::Unspecified) => "unspecified".to_owned(),
        Ok(SpanKind::Internal) => "internal".to_owned(),
        Ok(SpanKind::Server) => "server".to_owned(),
        Ok(SpanKind::Client) => "client".to_owned(),
        Ok(SpanKind::Producer) => "producer".to_owned(),
        Ok(SpanKind::Consumer) => "consumer".to_owned(),
        Err(_) => format!("unknown({})", span.kind),
    };
    let (status_code, status_message) = match &span.status {
        None => ("unset".to_owned(), String::new()),
        Some(status) => (
            match StatusCode::try_from(status.code) {
                Ok(StatusCode::Unset) => "unset".to_owned(),
                Ok(StatusCode::Ok) => "ok".to_owned(),
                Ok(StatusCode::Error) => "error".to_owned(),
                Err(_) => format!("unknown({})", status.code),
            },
            status.message.clone(),
        ),
    };
    ReceivedSpan {
        service_name: service_name.to_owned(),
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
        name: span.name,
        kind,
        attributes: attributes(&span.attributes),
        events: span
            .events
            .iter()
            .map(|event| (event.name.clone(), attributes(&event.attributes)))
            .collect(),
        status_code,
        status_message,
        protocol,
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), render_value(kv.value.as_ref())))
        .collect()
}

/// Strings as they are, bools and numbers by `to_string`, arrays as `[a, b]`, maps as
/// `{k: v}`, bytes as hex.
fn render_value(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(Value::ArrayValue(array)) => {
            let items: Vec<String> = array.values.iter().map(|v| render_value(Some(v))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::KvlistValue(list)) => {
            let items: Vec<String> = list
                .values
                .iter()
                .map(|kv| format!("{}: {}", kv.key, render_value(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Some(Value::StringValueStrindex(i)) => format!("strindex({i})"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
