//! The test OTLP receiver (`glia_tests::otlp`) against the real opentelemetry-otlp exporter:
//! a parent and a child span exported over gRPC, over HTTP/protobuf given the full traces URL,
//! and over HTTP/protobuf given the base URL in `OTEL_EXPORTER_OTLP_ENDPOINT`; then OTLP/JSON
//! and malformed requests sent by hand, which are refused without harming the receiver.

use glia_tests::otlp::{OtlpReceiver, ReceivedSpan};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Only an upper bound for waiting: the machine is shared and slow at times.
const WAIT: Duration = Duration::from_secs(30);

/// Held while an exporter is built (it reads the environment) or the environment is changed.
static ENV: Mutex<()> = Mutex::new(());

fn build_exporter(
    env_endpoint: Option<&str>,
    build: impl FnOnce() -> SpanExporter,
) -> SpanExporter {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    // The workspace builds reqwest without a crypto provider of its own (glia hands it a
    // rustls config); the exporter's default client takes the process-wide one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    const VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    match env_endpoint {
        Some(endpoint) => std::env::set_var(VAR, endpoint),
        None => std::env::remove_var(VAR),
    }
    let exporter = build();
    std::env::remove_var(VAR);
    exporter
}

/// An HTTP/protobuf exporter to `endpoint` given in code, or, with `None`, to
/// `env_endpoint` through `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn http_exporter(endpoint: Option<String>, env_endpoint: Option<&str>) -> SpanExporter {
    build_exporter(env_endpoint, || {
        let builder = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        match endpoint {
            Some(endpoint) => builder.with_endpoint(endpoint),
            None => builder,
        }
        .build()
        .expect("HTTP exporter")
    })
}

/// A gRPC exporter to `receiver`, with no endpoint variable in the way.
fn grpc_exporter(receiver: &OtlpReceiver) -> SpanExporter {
    build_exporter(None, || {
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(receiver.grpc_endpoint())
            .build()
            .expect("gRPC exporter")
    })
}

fn provider(exporter: SpanExporter, service: &str) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder_empty()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build()
}

/// A server span "parent" and, inside it, a client span "child" with attributes, an event and
/// an error status; both ended.
fn emit(provider: &SdkTracerProvider) {
    let tracer = provider.tracer("glia-otlp-receiver-test");
    let parent = tracer
        .span_builder("parent")
        .with_kind(SpanKind::Server)
        .start(&tracer);
    let cx = Context::current_with_span(parent);
    let mut child = tracer
        .span_builder("child")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("glia.module", "probe"),
            KeyValue::new("glia.attempt", 2_i64),
            KeyValue::new("glia.retried", true),
            KeyValue::new("glia.ratio", 0.5),
        ])
        .start_with_context(&tracer, &cx);
    opentelemetry::trace::Span::add_event(
        &mut child,
        "retrying",
        vec![KeyValue::new("reason", "deadline")],
    );
    opentelemetry::trace::Span::set_status(&mut child, Status::error("module failed"));
    opentelemetry::trace::Span::end(&mut child);
    cx.span().end();
}

fn has_pair(service: &'static str) -> impl Fn(&[ReceivedSpan]) -> bool {
    move |spans| {
        ["parent", "child"].iter().all(|name| {
            spans
                .iter()
                .any(|s| s.service_name == service && s.name == *name)
        })
    }
}

fn one<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.service_name == service && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one {name:?} span of {service}: {spans:#?}");
    found[0]
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

fn check_pair(spans: &[ReceivedSpan], service: &str, protocol: &str) {
    let parent = one(spans, service, "parent");
    let child = one(spans, service, "child");
    for span in [parent, child] {
        assert_eq!(span.protocol, protocol);
        assert!(is_hex(&span.trace_id, 32), "{span}");
        assert!(is_hex(&span.span_id, 16), "{span}");
    }
    assert_eq!(parent.parent_span_id, None);
    assert_eq!(parent.kind, "server");
    assert_eq!(parent.status_code, "unset");
    assert!(parent.events.is_empty());

    assert_eq!(child.trace_id, parent.trace_id);
    assert_eq!(
        child.parent_span_id.as_deref(),
        Some(parent.span_id.as_str())
    );
    assert_ne!(child.span_id, parent.span_id);
    assert_eq!(child.kind, "client");
    assert_eq!(child.attribute("glia.module"), Some("probe"));
    assert_eq!(child.attribute("glia.attempt"), Some("2"));
    assert_eq!(child.attribute("glia.retried"), Some("true"));
    assert_eq!(child.attribute("glia.ratio"), Some("0.5"));
    assert_eq!(
        child.events,
        vec![(
            "retrying".to_owned(),
            BTreeMap::from([("reason".to_owned(), "deadline".to_owned())])
        )]
    );
    assert_eq!(child.status_code, "error");
    assert_eq!(child.status_message, "module failed");
}

/// Flushes and shuts the provider down off the async threads (the exporters block).
async fn flush(provider: SdkTracerProvider) {
    tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("flushed");
        provider.shutdown().expect("shut down");
    })
    .await
    .expect("the flush did not panic");
}

#[tokio::test]
async fn grpc_export_arrives() {
    let receiver = OtlpReceiver::start().expect("receiver started");
    // tonic's channel needs the runtime it is built in.
    let exporter = grpc_exporter(&receiver);
    let provider = provider(exporter, "otlp-grpc");
    emit(&provider);
    flush(provider).await;
    let spans = receiver.wait_for_spans(has_pair("otlp-grpc"), WAIT).await;
    check_pair(&spans, "otlp-grpc", "grpc");
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
}

/// No runtime at all: the blocking HTTP client exports from the batch thread.
#[test]
fn http_protobuf_export_to_the_full_traces_url_arrives() {
    let receiver = OtlpReceiver::start().expect("receiver started");
    let exporter = http_exporter(Some(receiver.http_traces_url()), None);
    let provider = provider(exporter, "otlp-http");
    emit(&provider);
    provider.force_flush().expect("flushed");
    provider.shutdown().expect("shut down");
    let spans = receiver.wait_for_spans_blocking(has_pair("otlp-http"), WAIT);
    check_pair(&spans, "otlp-http", "http");
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL: the exporter appends `/v1/traces` to it.
#[tokio::test]
async fn http_protobuf_export_to_the_base_url_from_the_environment_arrives() {
    let receiver = OtlpReceiver::start().expect("receiver started");
    let exporter = http_exporter(None, Some(&receiver.http_endpoint()));
    let provider = provider(exporter, "otlp-http-env");
    emit(&provider);
    flush(provider).await;
    let spans = receiver
        .wait_for_spans(has_pair("otlp-http-env"), WAIT)
        .await;
    check_pair(&spans, "otlp-http-env", "http");
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
}

/// An endpoint given in code is used as it is, path and all: a base URL posts to `/`, which
/// the receiver (like a real collector) refuses.
#[tokio::test]
async fn http_endpoint_given_in_code_is_the_full_url() {
    let receiver = OtlpReceiver::start().expect("receiver started");
    let exporter = http_exporter(Some(receiver.http_endpoint()), None);
    let provider = provider(exporter, "otlp-http-base");
    emit(&provider);
    tokio::task::spawn_blocking(move || {
        // The export fails (404); what matters is where it went.
        let _ = provider.force_flush();
        let _ = provider.shutdown();
    })
    .await
    .expect("the flush did not panic");
    assert!(receiver.spans().is_empty(), "{:#?}", receiver.spans());
    let rejected = receiver.rejected();
    assert!(
        rejected.iter().any(|r| r.starts_with("POST /: ")),
        "{rejected:?}"
    );
}

const JSON_EXPORT: &str = r#"{"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"otlp-json"}}]},
  "scopeSpans":[{"scope":{"name":"by-hand"},"spans":[{
    "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
    "parentSpanId":"eee19b7ec3c1b173","name":"json-span","kind":3,
    "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
    "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"d","value":{"doubleValue":1.5}},
                  {"key":"b","value":{"boolValue":false}},
                  {"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":"1"}]}}}],
    "events":[{"timeUnixNano":"1544712660500000000","name":"e",
               "attributes":[{"key":"k","value":{"stringValue":"v"}}]}],
    "status":{"code":1}
  }]}]
}]}"#;

/// Runs under actix's runtime, posting with awc: OTLP/JSON is understood, and malformed or
/// misdirected requests get 4xx answers and are listed, while the receiver keeps working.
#[actix_rt::test]
async fn json_and_bad_requests_over_http() {
    let receiver = OtlpReceiver::start().expect("receiver started");
    let client = awc::Client::default();
    let url = receiver.http_traces_url();
    let post = |content_type: &'static str, body: &'static [u8]| {
        client
            .post(&url)
            .insert_header(("content-type", content_type))
            .send_body(body)
    };

    let truncated: &[u8] = &[0x0a, 0x05, 0x01];
    let status = post("application/x-protobuf", truncated)
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 400);
    let status = post("application/json", b"{\"resourceSpans\": 7")
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 400);
    let status = post("text/plain", b"hello").await.unwrap().status();
    assert_eq!(status.as_u16(), 415);
    let status = client.get(&url).send().await.unwrap().status();
    assert_eq!(status.as_u16(), 405);
    let status = client
        .post(receiver.http_endpoint())
        .insert_header(("content-type", "application/x-protobuf"))
        .send_body(&b""[..])
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 404);
    assert_eq!(receiver.rejected().len(), 5, "{:?}", receiver.rejected());
    assert!(receiver.spans().is_empty());

    let mut response = post("application/json; charset=utf-8", JSON_EXPORT.as_bytes())
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.body().await.unwrap().as_ref(), b"{}");

    let spans = receiver.wait_for_spans(|s| !s.is_empty(), WAIT).await;
    let span = one(&spans, "otlp-json", "json-span");
    assert_eq!(span.protocol, "http");
    assert_eq!(span.trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(span.span_id, "eee19b7ec3c1b174");
    assert_eq!(span.parent_span_id.as_deref(), Some("eee19b7ec3c1b173"));
    assert_eq!(span.kind, "client");
    assert_eq!(span.status_code, "ok");
    assert_eq!(
        span.attributes,
        BTreeMap::from([
            ("n".to_owned(), "42".to_owned()),
            ("d".to_owned(), "1.5".to_owned()),
            ("b".to_owned(), "false".to_owned()),
            ("a".to_owned(), "[x, 1]".to_owned()),
        ])
    );
    assert_eq!(
        span.events,
        vec![(
            "e".to_owned(),
            BTreeMap::from([("k".to_owned(), "v".to_owned())])
        )]
    );
}

/// Dropping the receiver while an exporter is still connected, on the runtime that drives that
/// exporter's connection, neither waits for the exporter nor leaves the endpoint up.
#[tokio::test]
async fn drop_with_a_connected_exporter() {
    let receiver = OtlpReceiver::start().expect("receiver started");
    let exporter = grpc_exporter(&receiver);
    let provider = provider(exporter, "otlp-grpc-open");
    emit(&provider);
    let flushing = provider.clone();
    tokio::task::spawn_blocking(move || flushing.force_flush().expect("flushed"))
        .await
        .expect("the flush did not panic");
    receiver
        .wait_for_spans(has_pair("otlp-grpc-open"), WAIT)
        .await;
    drop(receiver);

    emit(&provider);
    let flushed = tokio::task::spawn_blocking(move || {
        let flushed = provider.force_flush();
        let _ = provider.shutdown();
        flushed
    })
    .await
    .expect("the flush did not panic");
    assert!(flushed.is_err(), "exported to a stopped receiver");
}

/// The timeout's panic lists what did arrive.
#[tokio::test]
#[should_panic(expected = "did not get the expected spans within 100ms; it got 2:")]
async fn wait_for_spans_panics_listing_the_spans() {
    let receiver = OtlpReceiver::start().expect("receiver started");
    let exporter = grpc_exporter(&receiver);
    let provider = provider(exporter, "otlp-timeout");
    emit(&provider);
    flush(provider).await;
    receiver
        .wait_for_spans(has_pair("otlp-timeout"), WAIT)
        .await;
    receiver
        .wait_for_spans(|spans| spans.len() > 2, Duration::from_millis(100))
        .await;
}
