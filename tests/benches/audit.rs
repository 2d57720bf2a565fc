//! What audit mode costs on the decision path: `check_event_for_spam` through the coordinator
//! (no HTTP), one request at a time, under three configs measured in the same run and
//! interleaved round by round:
//!
//! - `enforce_1`: one rule (`message_policy`) that allows the message;
//! - `enforce_2`: that rule and a second one, both enforced, both allowing: the cost of
//!   asking one more module;
//! - `audit_1`: the first rule and the second in `mode: audit`, where it would deny (so
//!   every decision also makes a would-be walk, a disagreement and its metric).
//!
//! Each round times `PER_ROUND` dispatches of each config in turn; the report is each
//! config's median per-dispatch time over the rounds, and the ratios to `enforce_1` and
//! `enforce_2`. Modules are `message_policy`'s default (an instance per dispatching thread).
//!
//! Run: `cargo bench -p glia-tests --bench audit`. Under `cargo test` it runs 2 short rounds,
//! as a smoke test.

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::dispatch;

use glia_bus_schema::requests::CheckEventForSpam;
use glia_bus_schema::CallbackRequest;
use glia_runtime::Glia;
use glia_tests::load::{full_run, median};
use glia_tests::TestGlia;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// `message_policy` blocking `keyword`, named `name`, in `mode`.
fn rule(name: &str, keyword: &str, mode: &str) -> serde_json::Value {
    json!({"module": "message_policy", "name": name, "mode": mode,
        "config": {"blocked_keywords": [keyword]}})
}

fn configs() -> Vec<(&'static str, String)> {
    let first = rule("first", "buy followers", "enforce");
    [
        ("enforce_1", json!([first])),
        (
            "enforce_2",
            json!([first, rule("second", "free crypto", "enforce")]),
        ),
        // The message says "release": the audited rule would deny every one.
        ("audit_1", json!([first, rule("trial", "release", "audit")])),
    ]
    .into_iter()
    .map(|(label, modules)| (label, json!({"modules": modules}).to_string()))
    .collect()
}

fn request() -> CallbackRequest {
    let event = serde_json::from_value(fixtures::message_json()).expect("a valid event");
    CallbackRequest::CheckEventForSpam(CheckEventForSpam { event })
}

/// Audited decisions settled so far (`glia_audit_decisions_total`, all series).
fn audited(glia: &Glia) -> u64 {
    let text = glia
        .telemetry()
        .metrics()
        .map(|m| m.render())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("glia_audit_decisions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Per-dispatch time of `n` sequential dispatches, in µs: until the last answer, and until
/// the last would-be walk has settled too (`audits` more audited decisions; the walks run
/// on this thread, after the answers, whenever the loop yields).
async fn time(glia: &Glia, request: &CallbackRequest, n: usize, audits: u64) -> (f64, f64) {
    let before = audited(glia);
    let start = Instant::now();
    for _ in 0..n {
        black_box(dispatch(glia, request).await);
    }
    let answered = start.elapsed();
    while audited(glia) < before + audits {
        tokio::task::yield_now().await;
    }
    let settled = start.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    (per(answered), per(settled))
}

fn main() {
    let (rounds, per_round) = if full_run() { (30, 5000) } else { (2, 200) };
    actix_rt::System::new().block_on(async {
        let request = request();
        let mut glias = Vec::new();
        for (label, yaml) in configs() {
            let config = TestGlia::config(&yaml).expect("bench config loads");
            let glia = Glia::start(config).await.expect("glia starts");
            let reply = dispatch(&glia, &request).await;
            assert!(
                reply.summary().kind == glia_bus_schema::ReplyKind::Allow,
                "{label}: {reply:?}"
            );
            glias.push((label, glia, Vec::new()));
        }
        for _ in 0..rounds {
            for (label, glia, samples) in &mut glias {
                let audits = if label.starts_with("audit") {
                    per_round as u64
                } else {
                    0
                };
                samples.push(time(glia, &request, per_round, audits).await);
            }
        }
        report(&glias);
        for (_, glia, _) in glias {
            glia.shutdown(Duration::from_secs(1)).await;
        }
    });
}

/// A config's label, its glia, and each round's (until answered, until settled) in µs.
type Measured<'a> = (&'a str, Glia, Vec<(f64, f64)>);

/// Each config's medians (until answered, until settled) and their ratios to the baselines.
fn report(glias: &[Measured<'_>]) {
    let medians: Vec<(&str, [f64; 2])> = glias
        .iter()
        .map(|(l, _, s)| {
            let answered: Vec<f64> = s.iter().map(|p| p.0).collect();
            let settled: Vec<f64> = s.iter().map(|p| p.1).collect();
            (*l, [median(&answered), median(&settled)])
        })
        .collect();
    let of = |label: &str, i: usize| {
        medians
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(f64::NAN, |m| m.1[i])
    };
    println!(
        "audit mode: check_event_for_spam, one at a time, medians per dispatch over {} interleaved rounds",
        glias[0].2.len()
    );
    for (i, what) in ["until answered", "until settled (would-be walks done)"]
        .iter()
        .enumerate()
    {
        println!("{what}:");
        for (label, m) in &medians {
            println!(
                "  {label:<10} {:>8.2} µs   x{:.2} of enforce_1   x{:.2} of enforce_2",
                m[i],
                m[i] / of("enforce_1", i),
                m[i] / of("enforce_2", i)
            );
        }
    }
}
