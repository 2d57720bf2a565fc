//! Traces across processes, through a real OTLP receiver (gRPC and HTTP): the coordinator's
//! invocation span parents the `glia worker` process's span over NATS, and a homeserver's
//! `traceparent` continues into both, and into the embedded placement's dispatch. Export over
//! TLS, with client certificates, to a collector that speaks nothing else.

mod support;

use glia_bus_schema::CallbackRequest;
use glia_runtime::app::StartOptions;
use glia_tests::embedded::EmbeddedGlia;
use glia_tests::harness::{glia_binary, TestGlia};
use glia_tests::nats::NatsServer;
use glia_tests::otlp::{OtlpReceiver, ReceivedSpan, ReceiverTls};
use glia_tests::pki::TestPki;
use glia_tests::process::GliaProcess;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use support::TempFile;

const WAIT: Duration = Duration::from_secs(60);
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

fn traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

type Process = GliaProcess;

/// Starts `glia <args>` with extra environment variables; its log goes to the test's.
fn glia(args: &[&str], env: &[(&str, &str)]) -> Process {
    GliaProcess::spawn(args, env, true)
}

/// Starts `glia serve` on `config` at a port the system picks, with `extra` arguments and
/// `env` (its log kept only when `logged`); returns it, once listening, and its address.
async fn serve_glia(
    config: &TempFile,
    extra: &[&str],
    env: &[(&str, &str)],
    logged: bool,
) -> (Process, String) {
    GliaProcess::serve(config.path(), extra, env, !logged).await
}

/// SIGTERM, then wait: glia drains and flushes its spans (and decision records) on the way
/// out. Returns what it wrote on standard output.
fn terminate(process: Process) -> String {
    terminate_with_log(process).0
}

/// [`terminate`], returning standard output and the log.
fn terminate_with_log(process: Process) -> (String, String) {
    let (stdout, log, _) = process.terminate_with_log();
    (stdout, log)
}

async fn post(url: &str, body: Value, traceparent: &str) -> (u16, Value, Option<String>) {
    try_post(url, body, traceparent)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

async fn try_post(
    url: &str,
    body: Value,
    traceparent: &str,
) -> Result<(u16, Value, Option<String>), String> {
    let mut resp = awc::Client::default()
        .post(url)
        .insert_header(("content-type", "application/json"))
        .insert_header(("traceparent", traceparent))
        .send_body(body.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let bytes = resp.body().await.map_err(|e| e.to_string())?;
    let decision = resp
        .headers()
        .get("glia-decision-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        decision,
    ))
}

/// Asks until the module answers for itself (glia listens, its worker is up), in another
/// trace so these tries stay out of the trace under test.
async fn until_served(url: &str) {
    for _ in 0..400 {
        let tp = "00-11111111111111111111111111111111-2222222222222222-00";
        if let Ok((200, body, _)) = try_post(url, evil_room(), tp).await {
            if body["decision"] == "deny" {
                return;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the worker never answered");
}

fn evil_room() -> Value {
    json!({"user_id": "@evilguy:example.com", "room_config": {}})
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    pred: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| pred(s)).collect();
    assert_eq!(found.len(), 1, "one {what} in {spans:#?}");
    found[0]
}

/// Checks the tree caller → dispatch → send → process across the two services.
fn check_tree(spans: &[ReceivedSpan], coordinator: &str, worker: &str, decision_id: &str) {
    let ours: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == CALLER_TRACE)
        .cloned()
        .collect();
    let dispatch = one(&ours, "dispatch span", |s| {
        s.name == "dispatch user_may_create_room"
    });
    assert_eq!(dispatch.service_name, coordinator);
    assert_eq!(dispatch.kind, "server");
    assert_eq!(dispatch.parent_span_id.as_deref(), Some(CALLER_SPAN));
    assert_eq!(dispatch.attribute("glia.result"), Some("deny"));
    assert_eq!(dispatch.attribute("glia.winner"), Some("demo"));
    assert_eq!(dispatch.attribute("glia.decision_id"), Some(decision_id));

    let send = one(&ours, "send span", |s| s.name == "send glia.v1.module.demo");
    assert_eq!(send.service_name, coordinator);
    assert_eq!(send.kind, "producer");
    assert_eq!(
        send.parent_span_id.as_deref(),
        Some(dispatch.span_id.as_str())
    );
    assert_eq!(send.attribute("messaging.system"), Some("nats"));
    assert_eq!(
        send.attribute("messaging.destination.name"),
        Some("glia.v1.module.demo.user_may_create_room")
    );
    assert_eq!(send.attribute("glia.outcome"), Some("deny"));

    let process = one(&ours, "process span", |s| {
        s.name == "process glia.v1.module.demo"
    });
    assert_eq!(
        process.service_name, worker,
        "the worker's span comes from the worker"
    );
    assert_eq!(process.kind, "consumer");
    assert_eq!(
        process.parent_span_id.as_deref(),
        Some(send.span_id.as_str()),
        "the worker's span is a child of the coordinator's invocation span"
    );
    assert_eq!(process.attribute("messaging.system"), Some("nats"));
    assert_eq!(
        process.attribute("messaging.consumer.group.name"),
        Some("glia.v1.module.demo")
    );
    assert_eq!(
        process.attribute("glia.callback"),
        Some("user_may_create_room")
    );
    assert_eq!(process.attribute("glia.outcome"), Some("answer"));
    for span in spans {
        assert!(
            !span.name.contains("_INBOX"),
            "an inbox in a span name: {span:?}"
        );
    }
}

#[actix_rt::test]
async fn coordinator_and_worker_process_spans_share_one_trace_over_grpc() {
    let nats = NatsServer::start();
    let receiver = OtlpReceiver::start().expect("the OTLP receiver starts");
    let config = json!({
        "bus": {"type": "nats", "url": nats.url()},
        "telemetry": {"traces": {"exporter": "otlp", "protocol": "grpc", "endpoint": receiver.grpc_endpoint()}},
        "modules": [{"module": "demo", "placement": "nats", "timeout": "5s", "callbacks": ["user_may_create_room"]}]
    });
    let file = TempFile::new("otlp-grpc.yaml", &config.to_string());
    // Exported every 50 ms, so the spans arrive while the worker runs.
    let mut worker = glia(
        &[
            "worker",
            "--config",
            file.path().to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
    );
    let metrics = worker.listening("serving GET /metrics on").await;
    let g = TestGlia::start(&config.to_string()).await;
    let url = format!("{}/_glia/v1/callbacks/user_may_create_room", g.base_url);
    until_served(&url).await;
    let (status, body, decision_id) = post(&url, evil_room(), &traceparent()).await;
    assert_eq!(
        (status, body["module"].as_str()),
        (200, Some("demo")),
        "{body}"
    );
    let decision_id = decision_id.expect("the decision id comes back");
    // Whether the spans arrived is checked at the receiver; the flush only hurries them.
    let _ = g.glia.telemetry().flush().await;
    let spans = receiver
        .wait_for_spans(
            |spans| {
                let ours = spans.iter().filter(|s| s.trace_id == CALLER_TRACE);
                ours.clone().any(|s| s.service_name == "glia-worker")
                    && ours.clone().any(|s| s.name.starts_with("dispatch"))
                    && ours.filter(|s| s.name.starts_with("send")).count() == 1
            },
            WAIT,
        )
        .await;
    assert!(spans.iter().all(|s| s.protocol == "grpc"));
    check_tree(&spans, "glia-coordinator", "glia-worker", &decision_id);

    // The worker answers its own health check beside its metrics.
    let mut resp = awc::Client::default()
        .get(format!("http://{metrics}/health"))
        .send()
        .await
        .expect("the worker serves /health");
    assert_eq!(resp.status().as_u16(), 200);
    let health: Value = resp.json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["bus"], "connected", "{health}");
    assert_eq!(health["modules"][0]["name"], "demo", "{health}");
    assert_eq!(health["modules"][0]["state"], "running", "{health}");

    // The worker serves its own metrics: what it invoked and its module's state.
    let mut resp = awc::Client::default()
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("the worker serves /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let text = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(k).is_some_and(|l| l == *v))
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => panic!("{name} is not a counter or gauge"),
            })
    };
    let answered = value(
        "glia_invocations_total",
        &[
            ("module", "demo"),
            ("callback", "user_may_create_room"),
            ("outcome", "answer"),
        ],
    );
    assert!(answered >= Some(2.0), "{answered:?}\n{text}");
    assert_eq!(
        value(
            "glia_module_state",
            &[("module", "demo"), ("state", "running")]
        ),
        Some(1.0)
    );
    terminate(worker);
    g.glia.shutdown(Duration::from_secs(1)).await;
}

#[actix_rt::test]
async fn two_glia_processes_export_over_http_and_flush_on_shutdown() {
    let nats = NatsServer::start();
    let receiver = OtlpReceiver::start().expect("the OTLP receiver starts");
    // Configured by the standard variables alone; the service names come from the file.
    let config = json!({
        "bus": {"type": "nats", "url": nats.url()},
        "telemetry": {"service_name": "hs1", "decision_log": {"output": "stdout"}},
        "modules": [{"module": "demo", "placement": "nats", "timeout": "5s", "callbacks": ["user_may_create_room"]}]
    });
    let file = TempFile::new("otlp-http.yaml", &config.to_string());
    let endpoint = receiver.http_endpoint();
    // Batches would wait ten minutes: only the flush at shutdown can deliver them.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ];
    let worker = glia(&["worker", "--config", file.path().to_str().unwrap()], &env);
    let (serve, listen) = serve_glia(&file, &[], &env, false).await;
    let url = format!("http://{listen}/_glia/v1/callbacks/user_may_create_room");
    until_served(&url).await;
    let (status, body, decision_id) = post(&url, evil_room(), &traceparent()).await;
    assert_eq!(
        (status, body["module"].as_str()),
        (200, Some("demo")),
        "{body}"
    );
    assert!(
        receiver.spans().iter().all(|s| s.trace_id != CALLER_TRACE),
        "nothing is exported before shutdown"
    );
    let records = terminate(serve);
    assert_eq!(terminate(worker), "", "a worker writes no decision records");
    let spans = receiver
        .wait_for_spans(
            |spans| {
                let ours = spans.iter().filter(|s| s.trace_id == CALLER_TRACE);
                ours.clone().any(|s| s.service_name == "hs1-worker")
                    && ours.clone().any(|s| s.service_name == "hs1-coordinator")
            },
            WAIT,
        )
        .await;
    assert!(spans.iter().all(|s| s.protocol == "http"));
    let decision_id = decision_id.expect("the decision id comes back");
    check_tree(&spans, "hs1-coordinator", "hs1-worker", &decision_id);
    // The decision log on standard output: one JSON record per line, ours among them.
    let records: Vec<Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect();
    let ours: Vec<&Value> = records
        .iter()
        .filter(|r| r["decision_id"] == decision_id.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{records:?}");
    assert_eq!(ours[0]["trace_id"], CALLER_TRACE);
    assert_eq!(ours[0]["winner"], "demo");
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
}

/// A collector that speaks only TLS, with `pki`'s server certificate; with `client_ca`, it
/// also wants a client certificate signed by that CA.
fn tls_receiver(pki: &TestPki, client_ca: Option<&str>) -> OtlpReceiver {
    OtlpReceiver::start_tls(ReceiverTls {
        cert_pem: pki.server.cert_pem.clone(),
        key_pem: pki.server.key_pem.clone(),
        client_ca_pem: client_ca.map(str::to_owned),
    })
    .expect("the OTLP receiver starts")
}

/// What glia is given for TLS, as files: the CA it trusts, its certificate and key.
struct TlsFiles {
    ca: TempFile,
    cert: TempFile,
    key: TempFile,
}

impl TlsFiles {
    fn new(trusted_ca_pem: &str, pki: &TestPki) -> TlsFiles {
        TlsFiles {
            ca: TempFile::new("ca.pem", trusted_ca_pem),
            cert: TempFile::new("client.pem", &pki.client.cert_pem),
            key: TempFile::new("client.key", &pki.client.key_pem),
        }
    }

    /// The standard variables naming these files, with an endpoint and protocol.
    fn env<'a>(&'a self, endpoint: &'a str, protocol: &'a str) -> Vec<(&'a str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", self.ca.path_str()),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                self.cert.path_str(),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", self.key.path_str()),
        ]
    }
}

fn demo_modules() -> Value {
    json!([{"module": "demo"}])
}

/// Starts `glia serve` on the internal bus with `env`, once it answers.
async fn serve_demo(config: &TempFile, env: &[(&str, String)], logged: bool) -> (Process, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (process, listen) = serve_glia(config, &[], &env, logged).await;
    let url = format!("http://{listen}/_glia/v1/callbacks/user_may_create_room");
    until_served(&url).await;
    (process, url)
}

fn is_our_dispatch(span: &ReceivedSpan, protocol: &str) -> bool {
    span.protocol == protocol && span.trace_id == CALLER_TRACE && span.name.starts_with("dispatch")
}

#[actix_rt::test]
async fn spans_reach_a_collector_over_mutual_tls_by_grpc_and_by_http() {
    let pki = TestPki::new();
    let receiver = tls_receiver(&pki, Some(&pki.ca_pem));
    let files = TlsFiles::new(&pki.ca_pem, &pki);

    // gRPC, configured in the file, from a coordinator in this process.
    let config = json!({
        "telemetry": {"traces": {
            "exporter": "otlp",
            "protocol": "grpc",
            "endpoint": receiver.grpc_endpoint(),
            "tls": {
                "ca_file": files.ca.path_str(),
                "cert_file": files.cert.path_str(),
                "key_file": files.key.path_str(),
            },
        }},
        "modules": demo_modules(),
    });
    let g = TestGlia::start(&config.to_string()).await;
    let url = format!("{}/_glia/v1/callbacks/user_may_create_room", g.base_url);
    let (status, body, _) = post(&url, evil_room(), &traceparent()).await;
    assert_eq!(
        (status, body["decision"].as_str()),
        (200, Some("deny")),
        "{body}"
    );
    let _ = g.glia.telemetry().flush().await;
    receiver
        .wait_for_spans(|s| s.iter().any(|s| is_our_dispatch(s, "grpc")), WAIT)
        .await;
    g.glia.shutdown(Duration::from_secs(1)).await;

    // HTTP, configured by the standard variables, from a `glia serve` process that finds no
    // CA certificates on the system: the CA file is all it needs.
    let config = TempFile::new(
        "otlp-tls.yaml",
        &json!({"modules": demo_modules()}).to_string(),
    );
    let endpoint = receiver.http_endpoint();
    let mut env = files.env(&endpoint, "http/protobuf");
    env.extend(no_system_roots());
    let (serve, url) = serve_demo(&config, &env, false).await;
    let (status, _, _) = post(&url, evil_room(), &traceparent()).await;
    assert_eq!(status, 200);
    terminate(serve);
    receiver
        .wait_for_spans(|s| s.iter().any(|s| is_our_dispatch(s, "http")), WAIT)
        .await;
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
}

/// Environment variables under which rustls finds no CA certificates on the system.
fn no_system_roots() -> [(&'static str, String); 2] {
    let nowhere = TempFile::unused_path("no-such-ca-store")
        .display()
        .to_string();
    [
        ("SSL_CERT_FILE", nowhere.clone()),
        ("SSL_CERT_DIR", nowhere),
    ]
}

/// glia checks whom it sends spans to: a collector whose certificate comes from a CA glia was
/// not told to trust gets nothing, and glia's log says why.
#[actix_rt::test]
async fn a_collector_glia_does_not_trust_gets_no_spans() {
    let pki = TestPki::new();
    let stranger = TestPki::new();
    let receiver = tls_receiver(&pki, None);
    let files = TlsFiles::new(&stranger.ca_pem, &stranger);
    let config = TempFile::new(
        "otlp-untrusted.yaml",
        &json!({"modules": demo_modules()}).to_string(),
    );
    for (protocol, endpoint) in [
        ("grpc", receiver.grpc_endpoint()),
        ("http/protobuf", receiver.http_endpoint()),
    ] {
        let mut env = files.env(&endpoint, protocol);
        // Only the flush at shutdown exports, so its failure is the one logged.
        env.push(("OTEL_BSP_SCHEDULE_DELAY", "600000".into()));
        env.push(("RUST_LOG", "info".into()));
        let (serve, url) = serve_demo(&config, &env, true).await;
        let (status, _, _) = post(&url, evil_room(), &traceparent()).await;
        assert_eq!(status, 200);
        let (_, log) = terminate_with_log(serve);
        assert!(
            log.contains("cannot export spans") && log.contains("invalid peer certificate"),
            "{protocol}: no certificate error in the log:\n{log}"
        );
    }
    assert_eq!(receiver.spans(), Vec::new());
}

/// TLS files are read when the config is loaded (by `glia serve` as by `glia check-config`):
/// a missing or wrong one is a config error naming the setting, its line and the file.
#[actix_rt::test]
async fn unreadable_tls_files_are_refused_naming_the_setting() {
    let pki = TestPki::new();
    let cert = TempFile::new("client.pem", &pki.client.cert_pem);
    let missing = TempFile::unused_path("missing.pem");
    let start_error = |traces: Value| async move {
        let config = json!({"telemetry": {"traces": traces}, "modules": demo_modules()});
        match TestGlia::config(&config.to_string()) {
            Ok(_) => panic!("the config loaded with {traces}"),
            Err(e) => {
                assert!(e.position.is_some(), "{e}");
                e.to_string()
            }
        }
    };
    let with =
        |tls: Value| json!({"exporter": "otlp", "endpoint": "https://127.0.0.1:1", "tls": tls});
    let error = start_error(with(json!({"ca_file": missing}))).await;
    assert!(
        error.contains("key `telemetry.traces.tls.ca_file`: cannot read")
            && error.contains(&missing.display().to_string()),
        "{error}"
    );
    // A key where the certificate belongs, and a certificate where the key does.
    let key = TempFile::new("client.key", &pki.client.key_pem);
    let error = start_error(with(json!({"ca_file": key.path_str()}))).await;
    assert!(error.contains("no PEM certificate in it"), "{error}");
    let error = start_error(with(json!({
        "cert_file": cert.path_str(),
        "key_file": cert.path_str(),
    })))
    .await;
    assert!(
        error.contains("key `telemetry.traces.tls.key_file`")
            && error.contains("no PEM private key"),
        "{error}"
    );
    // Another client's key: not the certificate's.
    let other = TestPki::new();
    let other_key = TempFile::new("other.key", &other.client.key_pem);
    let error = start_error(with(json!({
        "cert_file": cert.path_str(),
        "key_file": other_key.path_str(),
    })))
    .await;
    assert!(error.contains("not a certificate and its key"), "{error}");
    // `glia check-config` reads them too, and names the config file.
    let config = TempFile::new(
        "otlp-missing-ca.yaml",
        &json!({"telemetry": {"traces": with(json!({"ca_file": missing}))}, "modules": demo_modules()})
            .to_string(),
    );
    let output = check_config(&config, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "check-config passed: {stderr}");
    assert!(
        stderr.contains(&config.path_str())
            && stderr.contains("key `telemetry.traces.tls.ca_file`: cannot read")
            && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    // A plain endpoint uses no TLS, so its files are not read.
    let plain =
        json!({"exporter": "otlp", "endpoint": "http://127.0.0.1:1", "tls": {"ca_file": missing}});
    let config = json!({"telemetry": {"traces": plain}, "modules": demo_modules()});
    let file = TempFile::new("otlp-plain.yaml", &config.to_string());
    let output = check_config(&file, &[]);
    assert!(output.status.success(), "{output:?}");
    let g = TestGlia::start(&config.to_string()).await;
    g.glia.shutdown(Duration::from_secs(1)).await;
}

/// `glia check-config FILE` with these extra environment variables.
fn check_config(config: &TempFile, env: &[(&str, String)]) -> std::process::Output {
    Command::new(glia_binary())
        .args(["check-config", &config.path_str()])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("glia runs")
}

/// A module's failure is logged with the dispatch's request id, decision id and trace id, so
/// a log search leads to the trace and to the decision record.
#[actix_rt::test]
async fn a_module_failure_is_logged_with_the_dispatch_ids() {
    // Every invocation panics; user_may_invite's failure policy (error) makes the crash an
    // error reply.
    let config = TempFile::new(
        "log-ids.yaml",
        &json!({"modules": [{"module": "chaos", "config": {"callbacks": {
            "user_may_invite": {"answer": "NOT_SPAM", "panic": 1.0}
        }}}]})
        .to_string(),
    );
    // Listening means started: glia binds once its modules run.
    let (serve, listen) = serve_glia(&config, &["--log-json"], &[], true).await;
    let client = awc::Client::default();
    let mut resp = client
        .post(format!(
            "http://{listen}/_glia/v1/callbacks/user_may_invite"
        ))
        .insert_header(("content-type", "application/json"))
        .insert_header(("traceparent", traceparent()))
        .insert_header(("x-request-id", "req-log-ids"))
        .send_body(json!({"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"}).to_string())
        .await
        .expect("glia answers");
    let body: Value = serde_json::from_slice(&resp.body().await.unwrap()).unwrap();
    assert_eq!(
        (resp.status().as_u16(), body["decision"].as_str()),
        (200, Some("error")),
        "{body}"
    );
    let decision_id = resp
        .headers()
        .get("glia-decision-id")
        .and_then(|v| v.to_str().ok())
        .expect("the decision id comes back")
        .to_owned();
    let (_, log) = terminate_with_log(serve);
    let failures: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "module failed; its failure policy decides")
        .collect();
    assert_eq!(failures.len(), 1, "{log}");
    let fields = &failures[0]["fields"];
    assert_eq!(fields["module"], "chaos", "{fields}");
    assert_eq!(fields["outcome"], "crashed", "{fields}");
    assert_eq!(fields["request_id"], "req-log-ids", "{fields}");
    assert_eq!(fields["decision_id"], decision_id.as_str(), "{fields}");
    assert_eq!(fields["trace_id"], CALLER_TRACE, "{fields}");
}

/// Without a CA file, an `https://` collector is checked against the system's CA
/// certificates; a system without any stops the start with a message saying what to set.
#[test]
fn https_without_a_ca_file_needs_the_systems_certificates() {
    let config = TempFile::new(
        "otlp-no-roots.yaml",
        &json!({"modules": demo_modules()}).to_string(),
    );
    let output = check_config(&config, &[]);
    assert!(output.status.success(), "the config itself is fine");
    let mut env = no_system_roots().to_vec();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:1".into()));
    let output = Command::new(glia_binary())
        .args(["serve", "--config", config.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("glia runs");
    // check-config, in the same environment, says the same.
    let checked = check_config(&config, &env);
    for (what, output) in [("serve", &output), ("check-config", &checked)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what} passed: {stderr}");
        assert!(
            stderr.contains("the system has no CA certificates")
                && stderr.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
            "{what}: {stderr}"
        );
    }
}

/// `glia_spans_dropped_total` summed over its reasons, from `GET /metrics` at `listen`.
async fn spans_dropped(listen: &str) -> u64 {
    let mut resp = awc::Client::default()
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    let text = String::from_utf8(resp.body().await.expect("a body").to_vec()).unwrap();
    text.lines()
        .filter(|l| l.starts_with("glia_spans_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[actix_rt::test]
async fn a_dead_collector_holds_shutdown_no_longer_than_the_grace_and_lost_spans_are_counted() {
    // One collector never answers (it takes connections and reads nothing), the other
    // refuses them. The exporter would wait 30 s for each export.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", silent.local_addr().unwrap());
    let refusing = format!("http://127.0.0.1:{}", glia_tests::nats::free_port());
    for (endpoint, protocol) in [
        (&silent, "grpc"),
        (&refusing, "http/protobuf"),
        (&silent, "http/protobuf"),
    ] {
        let config = TempFile::new(
            "otlp-dead.yaml",
            &json!({"shutdown_grace": "1s", "modules": demo_modules(),
                    "telemetry": {"traces": {"exporter": "otlp", "protocol": protocol,
                                             "endpoint": endpoint, "timeout": "30s"}}})
            .to_string(),
        );
        let env = [
            ("OTEL_BSP_SCHEDULE_DELAY", "20".to_owned()),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64".to_owned()),
        ];
        let (serve, url) = serve_demo(&config, &env, true).await;
        let listen = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        // Requests keep being answered, and the spans lost are counted.
        loop {
            for _ in 0..50 {
                let (status, body, _) = post(&url, evil_room(), &traceparent()).await;
                assert_eq!((status, body["decision"].as_str()), (200, Some("deny")));
            }
            if spans_dropped(&listen).await > 0 {
                break;
            }
        }
        let (_, log, took) = serve.terminate_with_log();
        // The grace is 1 s; the exporter alone would have held it for 30 s.
        assert!(
            took < Duration::from_secs(10),
            "{protocol} to {endpoint}: SIGTERM took {took:?}:\n{log}"
        );
        eprintln!("{protocol} to a dead collector at {endpoint}: SIGTERM took {took:?}");
    }
}

/// The embedded placement continues the trace of the caller on whose thread it dispatches
/// (Synapse's active span, as the Python extension hands it over): glia's dispatch span is
/// its child, both when the dispatch answers on the caller's thread (`per_thread`) and when
/// it finishes on glia's thread (a module on its own thread).
#[actix_rt::test]
async fn the_embedded_placement_parents_its_dispatch_span_on_the_callers_traceparent() {
    let receiver = OtlpReceiver::start().expect("the OTLP receiver starts");
    for (instances, caller_span) in [("per_thread", CALLER_SPAN), ("one", "c7ad6b7169203332")] {
        let config = json!({
            "telemetry": {"traces": {"exporter": "otlp", "protocol": "grpc", "endpoint": receiver.grpc_endpoint()}},
            "modules": [{"module": "demo", "instances": instances}],
        });
        let config = TestGlia::config(&config.to_string()).expect("a valid config");
        let embedded = EmbeddedGlia::start(config, StartOptions::default())
            .await
            .expect("the embedded glia starts");
        let request =
            CallbackRequest::from_args("user_may_create_room".parse().unwrap(), evil_room())
                .unwrap();
        let traceparent = format!("00-{CALLER_TRACE}-{caller_span}-01");
        let reply = embedded
            .dispatch_traced(request, Some(traceparent), Some("glia=test".into()))
            .await
            .expect("decided");
        assert_eq!(serde_json::to_value(reply).unwrap()["decision"], "deny");
        embedded.stop().await;
        let spans = receiver
            .wait_for_spans(
                |s| {
                    s.iter()
                        .any(|s| s.parent_span_id.as_deref() == Some(caller_span))
                },
                WAIT,
            )
            .await;
        let dispatch = one(&spans, "dispatch span", |s| {
            s.parent_span_id.as_deref() == Some(caller_span)
        });
        assert_eq!(
            dispatch.name, "dispatch user_may_create_room",
            "{instances}"
        );
        assert_eq!(dispatch.trace_id, CALLER_TRACE, "{instances}");
        assert_eq!(
            dispatch.attribute("glia.winner"),
            Some("demo"),
            "{instances}"
        );
    }
}
