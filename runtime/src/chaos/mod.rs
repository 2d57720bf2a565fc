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
use crate::Glia;
use futures::stream::{self, StreamExt};
use glia_bus_schema::{CallbackRequest, Decision, DispatchReply};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How much later than its deadline an answer may arrive and still count as on time: the
/// deadline is enforced inside glia, this only absorbs scheduling on a busy machine.
pub const DEADLINE_SLACK: Duration = Duration::from_millis(500);

/// Runs the scenario once. Must run inside an actix system.
pub async fn run(options: &ChaosOptions) -> Result<ChaosReport, String> {
    let registry = glia_modules::builtin_registry();
    let yaml = options.config_yaml();
    let config = load_str(&yaml, "<chaos scenario>", &registry).map_err(|e| e.to_string())?;
    let glia = Glia::start(config).await.map_err(|e| e.to_string())?;
    let coordinator = glia.coordinator().clone();

    let started = Instant::now();
    let results: Vec<(usize, Option<Decision>, Duration)> = stream::iter(0..options.requests)
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
        .await;
    let elapsed = started.elapsed();

    // Let invocations still in mailboxes start, hung ones be caught by the watchdog, and
    // pending restarts finish.
    glia.flush().await;
    let settle_until = Instant::now() + Duration::from_secs(10);
    let settled = |g: &Glia| {
        options.chaos_modules().iter().all(|name| {
            let s = g.status_of(name).expect("scenario modules exist");
            s.state() == ModuleState::Running && s.crashes() == s.restarts() && s.in_flight() == 0
        })
    };
    while !settled(&glia) && Instant::now() < settle_until {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

    let mut report = ChaosReport {
        sent: options.requests,
        elapsed,
        ..ChaosReport::default()
    };
    for (i, decision, took) in results {
        let expected = options.expected(i);
        match decision {
            None => report.unanswered.push(i),
            Some(d) => {
                report.answered += 1;
                if took <= coordinator.deadline() + DEADLINE_SLACK {
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
    let mut planned: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for i in 0..options.requests {
        for (name, panics, hangs) in options.planned_failures(i) {
            let entry = planned.entry(name).or_default();
            entry.0 += u64::from(panics);
            entry.1 += u64::from(hangs);
        }
    }
    for name in options.chaos_modules() {
        let status = glia.status_of(&name).expect("scenario modules exist");
        let (planned_panics, planned_hangs) = planned.get(&name).copied().unwrap_or_default();
        report.modules.push(ModuleReport {
            name: name.clone(),
            state: status.state(),
            crashes: status.crashes(),
            restarts: status.restarts(),
            crashed_invocations: status.crashed_invocations(),
            planned_panics,
            planned_hangs,
            recoveries: status.recoveries(),
        });
    }
    glia.shutdown(Duration::from_millis(100)).await;
    Ok(report)
}

fn outcome_name(d: &Decision) -> String {
    match d {
        Decision::Allow { .. } => "allow".into(),
        Decision::Deny {
            errcode, module, ..
        } => format!("deny {errcode} by {module}"),
        Decision::Error(f) => format!("error by {}", f.module),
    }
}
