//! Telemetry in one process: the span tree of a dispatch (in-memory exporter), Prometheus
//! metrics at /metrics, and the decision log.

mod support;

use glia_runtime::app::StartOptions;
use glia_tests::harness::TestGlia;
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value};
use std::time::Duration;
use support::{decision_records as records, TempFile};

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

fn events(span: &SpanData) -> Vec<String> {
    span.events.iter().map(|e| e.name.to_string()).collect()
}

fn in_memory() -> (InMemorySpanExporter, SdkTracerProvider) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (exporter, provider)
}

/// Starts glia from `yaml` with its spans going to `provider`.
async fn start_traced(yaml: &str, provider: SdkTracerProvider) -> TestGlia {
    TestGlia::try_start_with(
        yaml,
        StartOptions {
            tracer_provider: Some(provider),
            ..StartOptions::default()
        },
    )
    .await
    .expect("glia starts")
}

fn scripted(name: &str, script: Value, extra: Value) -> Value {
    let mut module = json!({"module": "scripted", "name": name, "config": {"answers": {"user_may_invite": script}}});
    for (k, v) in extra.as_object().unwrap() {
        module[k] = v.clone();
    }
    module
}

/// POSTs a callback over HTTP with extra headers; returns status, headers and JSON body.
async fn post(
    g: &TestGlia,
    callback: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, awc::http::header::HeaderMap, Value) {
    let mut req = awc::Client::default()
        .post(format!("{}/_glia/v1/callbacks/{callback}", g.base_url))
        .insert_header(("content-type", "application/json"));
    for h in headers {
        req = req.insert_header(*h);
    }
    let mut resp = req.send_body(body.to_string()).await.expect("HTTP request");
    let bytes = resp.body().await.expect("HTTP body");
    (
        resp.status().as_u16(),
        resp.headers().clone(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[actix_rt::test]
async fn the_span_tree_of_a_dispatch_shows_each_modules_part() {
    let (exporter, provider) = in_memory();
    let modules = json!([
        scripted("t-allow", json!({"answer": "NOT_SPAM"}), json!({})),
        scripted(
            "t-slow",
            json!({"hang": true}),
            json!({"timeout": "50ms", "failure_policy": "allow"})
        ),
        scripted(
            "t-crash",
            json!({"panic": "boom"}),
            json!({"failure_policy": "allow"})
        ),
        scripted(
            "t-deny",
            json!({"answer": {"errcode": "M_FORBIDDEN"}}),
            json!({})
        ),
        scripted(
            "t-after",
            json!({"answer": "NOT_SPAM", "gate": "t-never"}),
            json!({})
        ),
    ]);
    let yaml = json!({"modules": modules}).to_string();
    let g = start_traced(&yaml, provider).await;

    // The homeserver's span continues into glia's.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let (status, headers, body) = post(
        &g,
        "user_may_invite",
        json!({"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"}),
        &[("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], "deny");
    assert_eq!(body["module"], "t-deny");
    let decision_id = headers
        .get("glia-decision-id")
        .expect("the decision id comes back")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(decision_id.len(), 32, "{decision_id}");

    g.glia.telemetry().flush().await.expect("spans exported");
    let spans = exporter.get_finished_spans().unwrap();
    let dispatch: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "dispatch user_may_invite")
        .collect();
    assert_eq!(dispatch.len(), 1, "{spans:#?}");
    let dispatch = dispatch[0];
    assert_eq!(dispatch.span_kind, SpanKind::Server);
    assert_eq!(
        dispatch.span_context.trace_id().to_string(),
        caller_trace,
        "the caller's trace continues"
    );
    assert_eq!(dispatch.parent_span_id.to_string(), caller_span);
    assert_eq!(
        attr(dispatch, "glia.callback").as_deref(),
        Some("user_may_invite")
    );
    assert_eq!(attr(dispatch, "glia.result").as_deref(), Some("deny"));
    assert_eq!(
        attr(dispatch, "glia.errcode").as_deref(),
        Some("M_FORBIDDEN")
    );
    assert_eq!(attr(dispatch, "glia.winner").as_deref(), Some("t-deny"));
    assert_eq!(attr(dispatch, "glia.decision_id"), Some(decision_id));
    assert!(attr(dispatch, "glia.duration_ms").is_some());

    let invocation = |module: &str| -> &SpanData {
        let found: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.name == format!("invoke {module}"))
            .collect();
        assert_eq!(found.len(), 1, "one span for {module}: {spans:#?}");
        found[0]
    };
    for (module, outcome) in [
        ("t-allow", "allow"),
        ("t-slow", "timeout"),
        ("t-crash", "crashed"),
        ("t-deny", "deny"),
        ("t-after", "skipped"),
    ] {
        let span = invocation(module);
        assert_eq!(
            span.parent_span_id,
            dispatch.span_context.span_id(),
            "{module} is a child of the dispatch"
        );
        assert_eq!(
            span.span_context.trace_id(),
            dispatch.span_context.trace_id()
        );
        assert_eq!(span.span_kind, SpanKind::Internal);
        assert_eq!(attr(span, "glia.module").as_deref(), Some(module));
        assert_eq!(
            attr(span, "glia.callback").as_deref(),
            Some("user_may_invite")
        );
        assert_eq!(
            attr(span, "glia.outcome").as_deref(),
            Some(outcome),
            "{module}"
        );
        if outcome != "skipped" {
            assert!(attr(span, "glia.latency_ms").is_some(), "{module}");
        }
    }
    assert_eq!(
        attr(invocation("t-deny"), "glia.errcode").as_deref(),
        Some("M_FORBIDDEN")
    );
    // Failures say which policy resolved them; the crash says what the supervisor did.
    let slow = invocation("t-slow");
    assert_eq!(events(slow), ["policy"]);
    assert!(matches!(slow.status, Status::Error { .. }));
    let crash = invocation("t-crash");
    assert_eq!(events(crash), ["crash", "restart", "policy"], "{crash:#?}");
    let policy = &crash.events.events[2];
    assert!(policy
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "glia.policy" && kv.value.as_str() == "allow"));
    assert!(events(invocation("t-allow")).is_empty());
    assert_ne!(dispatch.parent_span_id, SpanId::INVALID);
    g.stop().await;
}

#[actix_rt::test]
async fn without_a_caller_trace_a_dispatch_starts_one_and_chains_are_traced() {
    let (exporter, provider) = in_memory();
    let yaml = json!({"modules": [
        {"module": "scripted", "name": "c1", "config": {"answers": {"on_create_room": {"append_to": "chain"}}}},
        {"module": "scripted", "name": "c2", "config": {"answers": {"on_create_room": {"answer": {"deny": {"error": "no"}}}}}},
        {"module": "scripted", "name": "c3", "config": {"answers": {"on_create_room": {"append_to": "chain"}}}},
    ]})
    .to_string();
    let g = start_traced(&yaml, provider).await;
    let reply = g
        .dispatch_json(
            "on_create_room",
            json!({"requester": {"user_id": "@a:hs"}, "request_content": {}, "is_requester_admin": false}),
        )
        .await;
    assert_eq!(reply["decision"], "deny", "{reply}");
    g.glia.telemetry().flush().await.expect("spans exported");
    let spans = exporter.get_finished_spans().unwrap();
    let dispatch = spans
        .iter()
        .find(|s| s.name == "dispatch on_create_room")
        .expect("a dispatch span");
    assert_eq!(dispatch.parent_span_id, SpanId::INVALID, "a new trace");
    let outcome = |m: &str| {
        spans
            .iter()
            .find(|s| s.name == format!("invoke {m}"))
            .and_then(|s| attr(s, "glia.outcome"))
    };
    assert_eq!(outcome("c1").as_deref(), Some("allow"));
    assert_eq!(outcome("c2").as_deref(), Some("deny"));
    // A chain never invokes what comes after a refusal: no span at all.
    assert_eq!(outcome("c3"), None);
    g.stop().await;
}

/// One metric sample, parsed by a Prometheus text parser.
fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape.samples.iter().find(|s| {
        s.metric == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|l| l == *v))
    })
}

fn counter(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels).map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v)) | Some(prometheus_parse::Value::Gauge(v)) => *v,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
        None => 0.0,
    }
}

async fn scrape(g: &TestGlia) -> prometheus_parse::Scrape {
    scrape_url(&g.base_url).await
}

/// `GET {base_url}/metrics`, checked to parse line by line.
async fn scrape_url(base_url: &str) -> prometheus_parse::Scrape {
    let mut resp = awc::Client::default()
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    // Every line is a comment (HELP/TYPE) or a sample the parser understood.
    let sample_lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let parsed: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            // `_sum` and `_count` come out as samples of their own.
            prometheus_parse::Value::Histogram(b) => b.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(parsed, sample_lines, "every sample line parses:\n{text}");
    scrape
}

#[actix_rt::test]
async fn metrics_parse_as_prometheus_text_and_move_with_requests() {
    let yaml = json!({"modules": [
        scripted("m-allow", json!({"answer": "NOT_SPAM"}), json!({})),
        {"module": "scripted", "name": "m-deny", "config": {"answers": {
            "user_may_invite": {"answer": {"errcode": "M_FORBIDDEN"}},
            "user_may_create_room": {"panic": "boom"}}},
         "failure_policy": "allow"},
    ]})
    .to_string();
    let g = TestGlia::start(&yaml).await;
    let before = scrape(&g).await;
    let invite = json!({"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"});
    for _ in 0..3 {
        let (status, _, body) = post(&g, "user_may_invite", invite.clone(), &[]).await;
        assert_eq!((status, body["decision"].as_str()), (200, Some("deny")));
    }
    let (status, _, body) = post(
        &g,
        "user_may_create_room",
        json!({"user_id": "@a:hs", "room_config": {}}),
        &[],
    )
    .await;
    assert_eq!((status, body["decision"].as_str()), (200, Some("allow")));
    let after = scrape(&g).await;

    let moved = |name: &str, labels: &[(&str, &str)]| {
        counter(&after, name, labels) - counter(&before, name, labels)
    };
    let inv = "glia_invocations_total";
    assert_eq!(
        moved(
            inv,
            &[
                ("module", "m-allow"),
                ("callback", "user_may_invite"),
                ("outcome", "allow")
            ]
        ),
        3.0
    );
    assert_eq!(
        moved(
            inv,
            &[
                ("module", "m-deny"),
                ("callback", "user_may_invite"),
                ("outcome", "deny")
            ]
        ),
        3.0
    );
    assert_eq!(
        moved(
            inv,
            &[
                ("module", "m-deny"),
                ("callback", "user_may_create_room"),
                ("outcome", "crashed")
            ]
        ),
        1.0
    );
    let decisions = "glia_decisions_total";
    assert_eq!(
        moved(
            decisions,
            &[("callback", "user_may_invite"), ("result", "deny")]
        ),
        3.0
    );
    assert_eq!(
        moved(
            decisions,
            &[("callback", "user_may_create_room"), ("result", "allow")]
        ),
        1.0
    );
    // Histograms count every answered invocation and dispatch.
    let count = |name: &str, labels: &[(&str, &str)]| {
        assert!(
            matches!(
                sample(&after, name, labels).map(|s| &s.value),
                Some(prometheus_parse::Value::Histogram(_))
            ),
            "{name} is a histogram"
        );
        counter_of(&after, &format!("{name}_count"), labels)
    };
    assert_eq!(
        count(
            "glia_invocation_duration_seconds",
            &[("module", "m-allow"), ("callback", "user_may_invite")]
        ),
        3.0
    );
    assert_eq!(
        count(
            "glia_dispatch_duration_seconds",
            &[("callback", "user_may_invite")]
        ),
        3.0
    );
    // The supervisor's counters and the module states are read at scrape time.
    let mut restarted = 0.0;
    for _ in 0..600 {
        restarted = counter(
            &scrape(&g).await,
            "glia_module_restarts_total",
            &[("module", "m-deny")],
        );
        if restarted >= 1.0 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(restarted, 1.0);
    let last = scrape(&g).await;
    assert_eq!(
        counter(&last, "glia_module_crashes_total", &[("module", "m-deny")]),
        1.0
    );
    assert_eq!(
        counter(
            &last,
            "glia_module_state",
            &[("module", "m-allow"), ("state", "running")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            &last,
            "glia_module_state",
            &[("module", "m-allow"), ("state", "failed")]
        ),
        0.0
    );
    assert!(sample(&last, "glia_module_in_flight", &[("module", "m-allow")]).is_some());
    g.stop().await;
}

/// A histogram's `_count` series (the parser keeps it as an untyped sample).
fn counter_of(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels).map(|s| &s.value) {
        Some(prometheus_parse::Value::Untyped(v)) => *v,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

#[actix_rt::test]
async fn the_decision_log_has_one_record_per_request_with_content_left_out() {
    let path = TempFile::unused_path("redacted.jsonl");
    let yaml = json!({
        "telemetry": {"decision_log": {"output": "file", "path": path}},
        "modules": [
            {"module": "scripted", "name": "d-first", "config": {"answers": {"check_event_for_spam": {"answer": "NOT_SPAM"}}}},
            {"module": "list_spam_checker", "name": "d-list", "config": {"evil_users": ["@alice:secret.example"]}},
        ]
    })
    .to_string();
    let g = TestGlia::start(&yaml).await;
    let event = |sender: &str, body: &str| {
        json!({"event": {"type": "m.room.message", "sender": sender, "room_id": "!private:hs",
            "event_id": "$e", "content": {"msgtype": "m.text", "body": body}}})
    };
    let mut ids = Vec::new();
    for (sender, body) in [
        ("@alice:secret.example", "my password is hunter2"),
        ("@bob:secret.example", "hello there"),
    ] {
        let (status, headers, _) = post(
            &g,
            "check_event_for_spam",
            event(sender, body),
            &[("x-request-id", "req-dl")],
        )
        .await;
        assert_eq!(status, 200);
        ids.push(
            headers
                .get("glia-decision-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    // A request refused before dispatch (bad JSON) makes no decision and no record.
    let (status, headers, _) = post(&g, "check_event_for_spam", json!({"event": 5}), &[]).await;
    assert_eq!(status, 400);
    assert!(headers.get("glia-decision-id").is_none());

    let log = records(&path, 2).await;
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(records(&path, 2).await.len(), 2, "one record per request");
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [
        "hunter2",
        "hello there",
        "@alice",
        "@bob",
        "secret.example",
        "!private",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the decision log:\n{text}"
        );
    }
    let deny = &log[0];
    assert_eq!(deny["decision_id"], ids[0]);
    assert_eq!(deny["callback"], "check_event_for_spam");
    assert_eq!(deny["request_id"], "req-dl");
    assert!(deny["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(deny["winner"], "d-list");
    assert_eq!(deny["result"]["decision"], "deny");
    assert!(deny["result"]["errcode"].is_string());
    assert!(deny.get("input").is_none());
    let modules = deny["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 2);
    assert_eq!(modules[0]["module"], "d-first");
    assert_eq!(modules[0]["outcome"], "allow");
    assert!(modules[0]["latency_ms"].as_f64().is_some());
    assert!(modules[0].get("answer").is_none());
    assert_eq!(modules[1]["module"], "d-list");
    assert_eq!(modules[1]["outcome"], "deny");
    let allow = &log[1];
    assert_eq!(allow["decision_id"], ids[1]);
    assert_eq!(allow["result"]["decision"], "allow");
    assert!(allow.get("winner").is_none());
    assert!(allow.get("trace_id").is_none(), "no spans, no trace id");
    g.stop().await;
}

#[actix_rt::test]
async fn the_decision_log_carries_content_when_the_config_opts_in() {
    let path = TempFile::unused_path("content.jsonl");
    let (_exporter, provider) = in_memory();
    let yaml = json!({
        "telemetry": {"decision_log": {"output": "file", "path": path, "include_content": true}},
        "modules": [
            {"module": "list_spam_checker", "name": "c-list", "config": {"evil_users": ["@alice:hs"]}},
        ]
    })
    .to_string();
    let g = start_traced(&yaml, provider).await;
    let (status, _, _) = post(
        &g,
        "check_event_for_spam",
        json!({"event": {"type": "m.room.message", "sender": "@alice:hs", "room_id": "!r:hs",
            "event_id": "$e", "content": {"msgtype": "m.text", "body": "hunter2"}}}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let log = records(&path, 1).await;
    let record = &log[0];
    assert_eq!(record["input"]["event"]["content"]["body"], "hunter2");
    assert_eq!(
        record["modules"][0]["answer"],
        json!({"errcode": "M_FORBIDDEN"}),
        "{record}"
    );
    assert_eq!(record["result"]["reply"]["decision"], "deny");
    assert_eq!(record["trace_id"].as_str().map(str::len), Some(32));
    g.stop().await;
}

/// `glia check-config` looks at the decision log's file as `glia serve` would open it, without
/// creating it: a missing directory is an error naming the key and the path.
#[test]
fn check_config_finds_a_decision_log_that_cannot_be_opened() {
    let check = |path: &std::path::Path| {
        let config = TempFile::new(
            "decision-log-check.yaml",
            &json!({"telemetry": {"decision_log": {"output": "file", "path": path}},
                    "modules": [{"module": "demo"}]})
            .to_string(),
        );
        std::process::Command::new(glia_tests::harness::glia_binary())
            .args(["check-config", &config.path_str()])
            .output()
            .expect("glia runs")
    };
    let nowhere = TempFile::unused_path("no-such-dir").join("decisions.jsonl");
    let output = check(&nowhere);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "check-config passed: {stderr}");
    assert!(
        stderr.contains("key `telemetry.decision_log.path`")
            && stderr.contains(&nowhere.display().to_string())
            && stderr.contains("does not exist"),
        "{stderr}"
    );
    // A new file in a directory that exists is fine, and checking does not create it.
    let new = TempFile::unused_path("decisions.jsonl");
    let output = check(&new);
    assert!(output.status.success(), "{output:?}");
    assert!(!new.exists(), "check-config created {}", new.display());
}

/// A client that sends bad requests in a loop (one without the token made glia write 77,865
/// log lines, 23 MB, in 5 s): every refusal is counted, by route, status and errcode, but the
/// log gets one line per route, status and errcode every 10 s. So do the lines a client with
/// the token can repeat (a callback glia does not have).
#[actix_rt::test]
async fn a_burst_of_refused_requests_is_counted_but_logged_once_per_kind() {
    use futures::StreamExt;
    const N: usize = 400;
    let config = TempFile::new(
        "refusals.yaml",
        "auth_token: sekrit\nmodules:\n  - module: demo\n",
    );
    let (process, listen) =
        glia_tests::process::GliaProcess::serve(config.path(), &[], &[], false).await;
    let base = format!("http://{listen}");
    let client = awc::Client::default();
    let invite = json!({"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r:hs"}).to_string();
    let kinds: [(&str, &str, u16); 4] = [
        ("/_glia/v1/http-antispam/user_may_invite", "", 401),
        ("/_glia/v1/callbacks/user_may_invite", "Bearer wrong", 403),
        ("/_glia/v1/callbacks/user_may_invite", "Bearer sekrit", 400),
        (
            "/_glia/v1/http-antispam/accept_make_join",
            "Bearer sekrit",
            200,
        ),
    ];
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = futures::stream::iter((0..N).flat_map(|_| kinds))
        .map(|(path, token, _)| {
            let mut request = client
                .post(format!("{base}{path}"))
                .insert_header(("content-type", "application/json"));
            if !token.is_empty() {
                request = request.insert_header(("authorization", token));
            }
            // Valid JSON to the ingress, but not the callback's arguments to /callbacks.
            let body = if path.contains("callbacks") {
                "[]".to_owned()
            } else {
                invite.clone()
            };
            async move {
                let mut response = request.send_body(body).await.expect("glia answers");
                let _ = response.body().await;
                response.status().as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = started.elapsed();
    for (_, _, status) in kinds {
        assert_eq!(
            statuses.iter().filter(|s| **s == status).count(),
            N,
            "{status}"
        );
    }
    let scrape = scrape_url(&base).await;
    let refused = |route, status, reason| {
        let labels = [("route", route), ("status", status), ("reason", reason)];
        counter(&scrape, "glia_http_refused_total", &labels)
    };
    assert_eq!(refused("http_antispam", "401", "M_MISSING_TOKEN"), N as f64);
    assert_eq!(refused("callbacks", "403", "M_UNKNOWN_TOKEN"), N as f64);
    assert_eq!(refused("callbacks", "400", "M_BAD_JSON"), N as f64);
    let (_, log, _) = process.terminate_with_log();
    // One line per kind, and one more for each period the burst outlasted.
    let most = 1 + took.as_secs() as usize / 10;
    for needle in [
        "reason=M_MISSING_TOKEN",
        "reason=M_UNKNOWN_TOKEN",
        "reason=M_BAD_JSON",
        "a callback glia does not have",
    ] {
        let lines = log.lines().filter(|l| l.contains(needle)).count();
        assert!(
            (1..=most).contains(&lines),
            "{lines} lines with {needle}:\n{log}"
        );
    }
    assert!(
        log.lines().count() < 20 && log.len() < 8 << 10,
        "{} lines, {} bytes for {} requests:\n{log}",
        log.lines().count(),
        log.len(),
        4 * N
    );
}

#[actix_rt::test]
async fn secrets_are_never_recorded_and_redact_drops_more() {
    let path = TempFile::unused_path("redact.jsonl");
    let yaml = json!({
        "telemetry": {"decision_log": {"output": "file", "path": path, "include_content": true,
            "redact": ["body", "event.content.format"]}},
        "modules": [
            {"module": "scripted", "name": "r-auth", "config": {
                "answers": {"check_event_for_spam": {"answer": "NOT_SPAM"}},
                "auth_checkers": {"m.login.password": {"fields": ["password"], "answer": {"user_id": "@u:hs"}}}}},
        ]
    })
    .to_string();
    let g = TestGlia::start(&yaml).await;
    let event = json!({"event": {"type": "m.room.message", "sender": "@s:hs", "room_id": "!r:hs",
        "event_id": "$e", "content": {"msgtype": "m.text", "body": "the-body", "format": "the-format"}}});
    g.dispatch_json("check_event_for_spam", event).await;
    let login = json!({"username": "u", "login_type": "m.login.password",
        "login_dict": {"password": "hunter2"}});
    g.dispatch_json("check_auth", login).await;
    let log = records(&path, 2).await;
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in ["hunter2", "the-body", "the-format"] {
        assert!(!text.contains(secret), "{secret} recorded:\n{text}");
    }
    assert_eq!(log[0]["input"]["event"]["content"]["msgtype"], "m.text");
    assert_eq!(log[0]["redacted"], json!(["body", "event.content.format"]));
    assert_eq!(log[1]["input"]["username"], "u");
    assert_eq!(log[1]["redacted"], json!(["password", "login_dict"]));
    g.stop().await;
}
