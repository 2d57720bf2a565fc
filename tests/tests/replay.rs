//! `glia replay`: a decision log recorded under one config, re-decided under a candidate by
//! the real binary, reports exactly the decisions the candidate decides otherwise when it
//! runs live on the same requests.

mod support;

use glia_tests::harness::{glia_binary, TestGlia};
use serde_json::{json, Value};
use support::{decision_records as records, TempFile};

fn event(i: usize, sender: &str, body: &str) -> Value {
    json!({"event": {"type": "m.room.message", "sender": sender, "room_id": "!r:hs",
        "event_id": format!("$e{i}"), "content": {"msgtype": "m.text", "body": body}}})
}

/// The traffic: messages from several senders, some spam by one rule or the other, and
/// invites.
fn traffic() -> Vec<(&'static str, Value)> {
    let mut requests = Vec::new();
    let bodies = [
        "hello",
        "buy spam now",
        "free crypto here",
        "lunch?",
        "more spam",
    ];
    let senders = ["@alice:hs", "@evil:hs", "@bob:hs"];
    for i in 0..15 {
        let body = bodies[i % bodies.len()];
        let sender = senders[i % senders.len()];
        requests.push(("check_event_for_spam", event(i, sender, body)));
    }
    for inviter in senders {
        let args = json!({"inviter": inviter, "invitee": "@c:hs", "room_id": "!r:hs"});
        requests.push(("user_may_invite", args));
    }
    requests
}

fn config(log: &TempFile, modules: Value) -> String {
    json!({
        "telemetry": {"decision_log": {"output": "file", "path": log.path_str(), "include_content": true}},
        "modules": modules,
    })
    .to_string()
}

fn recorded_modules() -> Value {
    json!([{"module": "message_policy", "config": {"blocked_keywords": ["spam"]}}])
}

fn candidate_modules() -> Value {
    json!([
        {"module": "message_policy", "config": {"blocked_keywords": ["spam", "crypto"]}},
        {"module": "list_spam_checker", "config": {"evil_users": ["@evil:hs"]}},
    ])
}

/// Runs `modules` live on the traffic; the decision records, in traffic order.
async fn live(modules: Value, tag: &str) -> Vec<Value> {
    let log = TempFile::new(tag, "");
    let g = TestGlia::start(&config(&log, modules)).await;
    for (callback, args) in traffic() {
        g.dispatch_json(callback, args).await;
    }
    g.stop().await;
    records(log.path(), traffic().len()).await
}

/// `glia replay FLAGS --config CONFIG LOG`, run to its end.
fn replay(flags: &[&str], config: &TempFile, log: &TempFile) -> std::process::Output {
    std::process::Command::new(glia_binary())
        .arg("replay")
        .args(flags)
        .arg("--config")
        .arg(config.path())
        .arg(log.path())
        .output()
        .expect("glia replay runs")
}

/// The JSON report of a replay that must succeed.
fn json_report(flags: &[&str], config: &TempFile, log: &TempFile) -> Value {
    let out = replay(&[&["--json"], flags].concat(), config, log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

/// Records as a decision log file (one JSON object per line).
fn log_of(tag: &str, records: &[Value]) -> TempFile {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    TempFile::new(tag, &text)
}

/// A config file of `modules` alone.
fn modules_file(tag: &str, modules: Value) -> TempFile {
    TempFile::new(tag, &json!({"modules": modules}).to_string())
}

#[actix_rt::test]
async fn a_replay_reports_exactly_the_decisions_the_candidate_changes_live() {
    let recorded = live(recorded_modules(), "replay-recorded.jsonl").await;
    let candidate = live(candidate_modules(), "replay-live.jsonl").await;
    let changed_live: Vec<usize> = (0..recorded.len())
        .filter(|&i| recorded[i]["result"]["decision"] != candidate[i]["result"]["decision"])
        .map(|i| i + 1)
        .collect();
    assert!(
        changed_live.len() >= 4,
        "the traffic changes: {changed_live:?}"
    );

    let log = log_of("replay-input.jsonl", &recorded);
    let mut text = std::fs::read_to_string(log.path()).unwrap();
    text.push_str("{\"kind\":\"audit\",\"decision_id\":\"x\"}\nnot json\n");
    std::fs::write(log.path(), text).unwrap();
    let cand = TempFile::new(
        "replay-candidate.yaml",
        &config(&TempFile::new("replay-none.jsonl", ""), candidate_modules()),
    );
    let report = json_report(&["--rate", "1000"], &cand, &log);
    assert_eq!(report["replayed"], recorded.len());
    let changed: Vec<usize> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["line"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        changed, changed_live,
        "the replay's changes are the live run's"
    );
    for c in report["changes"].as_array().unwrap() {
        assert_eq!(c["change"], "allow_to_deny", "{c}");
        let line = c["line"].as_u64().unwrap() as usize;
        assert_eq!(
            c["replayed"]["decision"],
            candidate[line - 1]["result"]["decision"]
        );
        assert_eq!(c["module"], candidate[line - 1]["winner"]);
    }
    assert_eq!(report["by_change"]["allow_to_deny"], changed_live.len());
    assert_eq!(report["skipped"]["audit_records"], 1);
    assert_eq!(report["skipped"]["unreadable"], 1);
    assert!(report["by_module"]["list_spam_checker"].as_u64().unwrap() >= 1);
}

#[actix_rt::test]
async fn the_text_report_totals_by_callback_and_module_and_fails_on_change_when_asked() {
    let recorded = live(recorded_modules(), "replay-text.jsonl").await;
    let log = log_of("replay-text-input.jsonl", &recorded);
    let cand = modules_file("replay-text-candidate.yaml", candidate_modules());
    let out = replay(&["--fail-on-change"], &cand, &log);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(
        report.starts_with(&format!("replayed {} decisions", recorded.len())),
        "{report}"
    );
    assert!(report.contains("check_event_for_spam:"), "{report}");
    assert!(report.contains("user_may_invite: 0 / 3"), "{report}");
    assert!(report.contains("allow -> deny"), "{report}");
    assert!(report.contains("list_spam_checker"), "{report}");
    // The same config as recorded changes nothing.
    let same = modules_file("replay-same.yaml", recorded_modules());
    let out = replay(&["--fail-on-change"], &same, &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn records_without_arguments_or_with_redacted_ones_are_counted_not_replayed() {
    let lines = [
        json!({"decision_id": "a", "callback": "user_may_invite", "result": {"decision": "allow"}}),
        json!({"decision_id": "b", "callback": "check_auth", "redacted": ["login_dict"],
            "input": {"username": "u", "login_type": "m.login.password"}, "result": {"decision": "none"}}),
    ];
    let log = log_of("replay-skips.jsonl", &lines);
    let cand = modules_file("replay-skips.yaml", recorded_modules());
    let report = json_report(&[], &cand, &log);
    assert_eq!(report["replayed"], 0);
    assert_eq!(report["skipped"]["no_arguments"], 1);
    assert_eq!(report["skipped"]["redacted"], 1);
}

#[actix_rt::test]
async fn a_replay_reaches_a_candidates_modules_on_nats() {
    let nats = glia_tests::nats::NatsServer::start();
    let recorded = live(recorded_modules(), "replay-nats-recorded.jsonl").await;
    let log = log_of("replay-nats-input.jsonl", &recorded);
    let mut modules = candidate_modules();
    for m in modules.as_array_mut().unwrap() {
        m["placement"] = json!("nats");
    }
    let yaml = json!({"bus": {"type": "nats", "url": nats.url()}, "modules": modules}).to_string();
    let cand = TempFile::new("replay-nats-candidate.yaml", &yaml);
    let mut worker = glia_tests::process::GliaProcess::worker(cand.path(), &[], false);
    worker.logged("glia worker serving over NATS").await;
    let local = modules_file("replay-local-candidate.yaml", candidate_modules());
    let on_nats = json_report(&[], &cand, &log);
    let in_process = json_report(&[], &local, &log);
    assert!(on_nats["changed"].as_u64().unwrap() > 0, "{on_nats}");
    assert_eq!(on_nats["by_change"], in_process["by_change"], "{on_nats:#}");
    assert_eq!(on_nats["by_callback"], in_process["by_callback"]);
    worker.kill();
}
