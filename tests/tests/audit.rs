//! Trying a module before it bites: a module in `mode: audit` is asked as an enforcing one is,
//! its would-be decision recorded (decision log, metric) and never applied; a `rollout:`
//! enforces it for a stable share of subjects and audits it for the rest.

mod support;

use glia_runtime::policy::{Rollout, Subject};
use glia_tests::harness::TestGlia;
use glia_tests::probes;
use serde_json::{json, Value};
use support::{decision_records as records, TempFile};

fn invite(inviter: &str) -> Value {
    json!({"inviter": inviter, "invitee": "@b:hs", "room_id": "!r:hs"})
}

fn scripted(name: &str, script: Value, extra: Value) -> Value {
    let mut module = json!({"module": "scripted", "name": name,
        "config": {"probe": name, "answers": {"user_may_invite": script}}});
    for (k, v) in extra.as_object().unwrap() {
        module[k] = v.clone();
    }
    module
}

const DENY: &str = "M_FORBIDDEN";

fn deny() -> Value {
    json!({"answer": {"errcode": DENY}})
}

fn allow() -> Value {
    json!({"answer": "NOT_SPAM"})
}

fn config(log: &TempFile, modules: Value) -> String {
    json!({
        "telemetry": {"decision_log": {"output": "file", "path": log.path_str()}, "metrics": {"enabled": true}},
        "modules": modules,
    })
    .to_string()
}

/// The audit records of the log once it holds `n` lines.
async fn audits(log: &TempFile, n: usize) -> (Vec<Value>, Vec<Value>) {
    records(log.path(), n)
        .await
        .into_iter()
        .partition(|r| r["kind"] == "audit")
}

#[actix_rt::test]
async fn an_audited_deny_is_recorded_and_not_applied() {
    let log = TempFile::new("audit-deny.jsonl", "");
    let yaml = config(
        &log,
        json!([
            scripted("a-enforce", allow(), json!({})),
            // An instance per dispatching thread: its would-be walk must run on this thread.
            scripted(
                "a-audit",
                deny(),
                json!({"mode": "audit", "instances": "per_thread"})
            ),
        ]),
    );
    let g = TestGlia::start(&yaml).await;
    let reply = g.dispatch_json("user_may_invite", invite("@x:hs")).await;
    assert_eq!(
        reply["decision"], "allow",
        "the audited deny is not applied"
    );
    let (audit, decisions) = audits(&log, 2).await;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["audited"], json!(["a-audit"]));
    let names: Vec<&Value> = decisions[0]["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["module"])
        .collect();
    assert_eq!(
        names,
        vec!["a-enforce"],
        "the decision is the enforcing modules'"
    );
    let a = &audit[0];
    assert_eq!(a["decision_id"], decisions[0]["decision_id"]);
    assert_eq!(a["module"], "a-audit");
    assert_eq!(a["reason"], "audit");
    assert_eq!(a["would"]["decision"], "deny");
    assert_eq!(a["would"]["errcode"], DENY);
    assert_eq!(a["applied"]["decision"], "allow");
    assert_eq!(a["changed"], true);
    assert_eq!(probes::started("a-enforce"), 1, "asked once");
    assert_eq!(probes::started("a-audit"), 1, "asked once");
    g.stop().await;
}

#[actix_rt::test]
async fn an_audit_that_agrees_is_recorded_unchanged() {
    let log = TempFile::new("audit-agree.jsonl", "");
    let yaml = config(
        &log,
        json!([
            scripted("b-enforce", deny(), json!({})),
            scripted(
                "b-audit",
                deny(),
                json!({"mode": {"user_may_invite": "audit"}})
            ),
        ]),
    );
    let g = TestGlia::start(&yaml).await;
    let reply = g.dispatch_json("user_may_invite", invite("@x:hs")).await;
    assert_eq!(reply["decision"], "deny");
    assert_eq!(reply["module"], "b-enforce");
    let (audit, _) = audits(&log, 2).await;
    assert_eq!(audit[0]["would"]["decision"], "deny");
    assert_eq!(audit[0]["changed"], false, "same deny, whoever made it");
    g.stop().await;
}

#[actix_rt::test]
async fn an_audited_module_does_not_hold_the_decision_back() {
    let log = TempFile::new("audit-gate.jsonl", "");
    let gated = json!({"answer": {"errcode": DENY}, "gate": "audit-gate-1"});
    let yaml = config(
        &log,
        json!([
            scripted("c-audit", gated, json!({"mode": "audit", "priority": 10})),
            scripted("c-enforce", allow(), json!({})),
        ]),
    );
    let g = TestGlia::start(&yaml).await;
    // The audited module is first by priority and has not answered: the decision still goes
    // out, on the enforcing module's answer alone.
    let reply = g.dispatch_json("user_may_invite", invite("@x:hs")).await;
    assert_eq!(reply["decision"], "allow");
    let (audit, decisions) = audits(&log, 1).await;
    assert_eq!((audit.len(), decisions.len()), (0, 1));
    probes::open_gate("audit-gate-1", 1);
    let (audit, _) = audits(&log, 2).await;
    assert_eq!(audit[0]["module"], "c-audit");
    assert_eq!(audit[0]["would"]["decision"], "deny");
    assert_eq!(audit[0]["changed"], true);
    g.stop().await;
}

#[actix_rt::test]
async fn the_metric_counts_audits_and_disagreements() {
    let log = TempFile::new("audit-metric.jsonl", "");
    let yaml = config(
        &log,
        json!([scripted("d-audit", deny(), json!({"mode": "audit"}))]),
    );
    let g = TestGlia::start(&yaml).await;
    for _ in 0..3 {
        let reply = g.dispatch_json("user_may_invite", invite("@x:hs")).await;
        assert_eq!(reply["decision"], "allow");
    }
    let _ = audits(&log, 6).await;
    let (status, _) = g.get("/metrics", None).await;
    assert_eq!(status, 200);
    let text = metrics_text(&g).await;
    let series = |name: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(name)
                    && l.contains("module=\"d-audit\"")
                    && l.contains("callback=\"user_may_invite\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(
        series("glia_audit_disagreements_total").as_deref(),
        Some("3")
    );
    assert_eq!(series("glia_audit_decisions_total").as_deref(), Some("3"));
    g.stop().await;
}

async fn metrics_text(g: &TestGlia) -> String {
    let mut resp = awc::Client::default()
        .get(format!("{}/metrics", g.base_url))
        .send()
        .await
        .expect("GET /metrics");
    String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()
}

#[actix_rt::test]
async fn a_rollout_enforces_a_stable_share_of_senders_and_audits_the_rest() {
    let log = TempFile::new("audit-rollout.jsonl", "");
    let rollout = json!({"rollout": {"percent": 50, "by": "sender"}});
    let yaml = config(&log, json!([scripted("e-rollout", deny(), rollout)]));
    let g = TestGlia::start(&yaml).await;
    let share = Rollout {
        percent: 50.0,
        by: Subject::Sender,
    };
    let users: Vec<String> = (0..40).map(|i| format!("@user{i}:hs")).collect();
    let mut denied = Vec::new();
    for round in 0..2 {
        for user in &users {
            let reply = g.dispatch_json("user_may_invite", invite(user)).await;
            let enforced = share.enforces_subject("e-rollout", user);
            let want = if enforced { "deny" } else { "allow" };
            assert_eq!(reply["decision"], want, "{user}, round {round}");
            if round == 0 && enforced {
                denied.push(user.clone());
            }
        }
    }
    assert!(
        (10..=30).contains(&denied.len()),
        "about half denied: {denied:?}"
    );
    let audited = users.len() - denied.len();
    let (audit, _) = audits(&log, 2 * users.len() + 2 * audited).await;
    assert!(audit.iter().all(|a| a["reason"] == "rollout"));
    assert!(audit.iter().all(|a| a["changed"] == true));
    g.stop().await;
}

#[test]
fn mode_and_rollout_are_checked_with_the_config() {
    let error = |module: Value| {
        let yaml = json!({"modules": [module]}).to_string();
        match TestGlia::config(&yaml) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => e.to_string(),
        }
    };
    let base = |extra: Value| scripted("f", allow(), extra);
    let e = error(base(json!({"mode": "shadow"})));
    assert!(
        e.contains("mode") && e.contains("enforce, audit or rollout"),
        "{e}"
    );
    let e = error(base(json!({"mode": "rollout"})));
    assert!(e.contains("needs `rollout:"), "{e}");
    let e = error(base(json!({"rollout": {"percent": 101, "by": "sender"}})));
    assert!(e.contains("rollout") && e.contains("0 to 100"), "{e}");
    let e = error(base(
        json!({"rollout": {"percent": 5, "by": "sender"}, "mode": "audit"}),
    ));
    assert!(e.contains("no callback's mode is `rollout`"), "{e}");
    let e = error(base(json!({"rollout": {"percent": 5, "by": "planet"}})));
    assert!(e.contains("planet"), "{e}");
    let e = error(base(json!({"mode": {"user_may_invit": "audit"}})));
    assert!(e.contains("unknown callback"), "{e}");
    assert!(TestGlia::config(
        &json!({"modules": [base(json!({"rollout": {"percent": 0.5, "by": "room"}}))]}).to_string()
    )
    .is_ok());
}

#[actix_rt::test]
async fn an_audit_is_traced_under_its_dispatch() {
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let yaml = json!({"modules": [
        scripted("g-enforce", allow(), json!({})),
        scripted("g-audit", deny(), json!({"mode": "audit"})),
    ]})
    .to_string();
    let options = glia_runtime::app::StartOptions {
        tracer_provider: Some(provider),
        ..Default::default()
    };
    let g = TestGlia::try_start_with(&yaml, options)
        .await
        .expect("starts");
    let reply = g.dispatch_json("user_may_invite", invite("@x:hs")).await;
    assert_eq!(reply["decision"], "allow");
    let spans = || exporter.get_finished_spans().unwrap();
    probes::until(|| spans().iter().any(|s| s.name.starts_with("audit "))).await;
    let all = spans();
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    let dispatch = all
        .iter()
        .find(|s| s.name == "dispatch user_may_invite")
        .unwrap();
    let audit = all
        .iter()
        .find(|s| s.name == "audit user_may_invite")
        .unwrap();
    assert_eq!(audit.parent_span_id, dispatch.span_context.span_id());
    assert_eq!(
        audit.span_context.trace_id(),
        dispatch.span_context.trace_id()
    );
    assert_eq!(attr(dispatch, "glia.audited").as_deref(), Some("g-audit"));
    assert_eq!(attr(audit, "glia.module").as_deref(), Some("g-audit"));
    assert_eq!(attr(audit, "glia.audit.would").as_deref(), Some("deny"));
    assert_eq!(attr(audit, "glia.audit.applied").as_deref(), Some("allow"));
    assert_eq!(attr(audit, "glia.audit.changed").as_deref(), Some("true"));
    g.stop().await;
}
