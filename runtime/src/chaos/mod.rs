//! `glia chaos`: drives many requests at a scenario of chaos modules (which panic, hang,
//! stall and answer garbage on a seeded plan) mixed with real modules, and checks that every
//! request got exactly the answer the plan implies, by its deadline, and that every crash
//! was restarted.

mod report;
mod scenario;

pub use report::{ChaosReport, ModuleReport};
pub use scenario::{ChaosOptions, Expected};

use crate::app::load_str;
use crate::host::ModuleState;
use crate::{Coordinator, Glia};
use futures::stream::{self, StreamExt};
use glia_bus_schema::{CallbackRequest, Decision, DispatchReply};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much later than its deadline an answer may arrive and still count as on time: the
/// deadline is enforced inside glia, this only absorbs scheduling on a busy machine.
pub const DEADLINE_SLACK: Duration = Duration::from_millis(500);

/// One request's number, its decision (`None` if it got none) and how long it took.
type Answered = (usize, Option<Decision>, Duration);

/// Runs the scenario once. Must run inside an actix system.
pub async fn run(options: &ChaosOptions) -> Result<ChaosReport, String> {
    let registry = glia_modules::builtin_registry();
    let yaml = options.config_yaml();
    let config = load_str(&yaml, "<chaos scenario>", &registry).map_err(|e| e.to_string())?;
    let glia = Glia::start(config).await.map_err(|e| e.to_string())?;
    let coordinator = glia.coordinator().clone();

    let started = Instant::now();
    let results = send_all(options, &coordinator).await;
    let elapsed = started.elapsed();

    settle(&glia, options).await;

    let mut report = ChaosReport {
        sent: options.requests,
        elapsed,
        ..ChaosReport::default()
    };
    tally(&mut report, options, results, coordinator.deadline());
    report.modules.extend(module_reports(&glia, options));
    glia.shutdown(Duration::from_millis(100)).await;
    Ok(report)
}

/// Sends the scenario's requests, `concurrency` at a time, timing each one's answer.
async fn send_all(options: &ChaosOptions, coordinator: &Arc<Coordinator>) -> Vec<Answered> {
    stream::iter(0..options.requests)
        .map(|i| {
            let coordinator = coordinator.clone();
            async move {
                let request = CallbackRequest::UserMayInvite(options.request(i));
                let t = Instant::now();
                let reply = coordinator.dispatch(request, coordinator.new_meta()).await;
                let decision = match reply {
                    Ok(DispatchReply::UserMayInvite(d)) => Some(d),
                    _ => None,
                };
                (i, decision, t.elapsed())
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await
}

/// Lets invocations still in mailboxes start, hung ones be caught by the watchdog, and
/// pending restarts finish (for up to 10 s), so the modules' counts are final when read.
async fn settle(glia: &Glia, options: &ChaosOptions) {
    glia.flush().await;
    let settle_until = Instant::now() + Duration::from_secs(10);
    let settled = |g: &Glia| {
        options.chaos_modules().iter().all(|name| {
            let s = g.status_of(name).expect("scenario modules exist");
            s.state() == ModuleState::Running && s.crashes() == s.restarts() && s.in_flight() == 0
        })
    };
    while !settled(glia) && Instant::now() < settle_until {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts the answers into `report`: on time by `deadline` (plus the slack) or late, by
/// outcome, and each against what the plan expects.
fn tally(
    report: &mut ChaosReport,
    options: &ChaosOptions,
    results: Vec<Answered>,
    deadline: Duration,
) {
    for (i, decision, took) in results {
        let expected = options.expected(i);
        match decision {
            None => report.unanswered.push(i),
            Some(d) => {
                report.answered += 1;
                if took <= deadline + DEADLINE_SLACK {
                    report.by_deadline += 1;
                } else {
                    report.late.push((i, took));
                }
                *report.outcomes.entry(outcome_name(&d)).or_default() += 1;
                if !expected.matches(&d) {
                    report.wrong.push((i, expected, d));
                }
            }
        }
    }
}

/// Each chaos module's crashes, restarts and recoveries, beside the panics and hangs its
/// plan put in, so the report can tell a missed restart from a crash never planned.
fn module_reports(glia: &Glia, options: &ChaosOptions) -> Vec<ModuleReport> {
    let mut planned: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for i in 0..options.requests {
        for (name, panics, hangs) in options.planned_failures(i) {
            let entry = planned.entry(name).or_default();
            entry.0 += u64::from(panics);
            entry.1 += u64::from(hangs);
        }
    }
    options
        .chaos_modules()
        .into_iter()
        .map(|name| {
            let status = glia.status_of(&name).expect("scenario modules exist");
            let (planned_panics, planned_hangs) = planned.get(&name).copied().unwrap_or_default();
            ModuleReport {
                state: status.state(),
                crashes: status.crashes(),
                restarts: status.restarts(),
                crashed_invocations: status.crashed_invocations(),
                planned_panics,
                planned_hangs,
                recoveries: status.recoveries(),
                name,
            }
        })
        .collect()
}

/// The name an answer is counted under in the report's outcomes.
fn outcome_name(d: &Decision) -> String {
    match d {
        Decision::Allow { .. } => "allow".into(),
        Decision::Deny {
            errcode, module, ..
        } => format!("deny {errcode} by {module}"),
        Decision::Error(f) => format!("error by {}", f.module),
    }
}
