//! What a chaos run found.

use super::Expected;
use crate::host::ModuleState;
use glia_bus_schema::Decision;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One chaos module after the run.
#[derive(Debug, Clone)]
pub struct ModuleReport {
    /// Its name.
    pub name: String,
    /// Its state after the run.
    pub state: ModuleState,
    /// Crashes that took an instance down (a panic, a fatal error, or a hang past the watchdog).
    pub crashes: u64,
    /// Successful restarts.
    pub restarts: u64,
    /// Invocations that panicked.
    pub crashed_invocations: u64,
    /// Invocations the plan made panic.
    pub planned_panics: u64,
    /// Invocations the plan made hang.
    pub planned_hangs: u64,
    /// Time from each crash to serving again.
    pub recoveries: Vec<Duration>,
}

/// The result of a chaos run.
#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    /// Requests sent.
    pub sent: usize,
    /// Requests answered.
    pub answered: usize,
    /// Requests answered by their deadline.
    pub by_deadline: usize,
    /// Answers by outcome.
    pub outcomes: BTreeMap<String, usize>,
    /// Requests with no answer.
    pub unanswered: Vec<usize>,
    /// Requests answered late, and how long they took.
    pub late: Vec<(usize, Duration)>,
    /// Requests whose answer differs from the plan's.
    pub wrong: Vec<(usize, Expected, Decision)>,
    /// Per chaos module.
    pub modules: Vec<ModuleReport>,
    /// Wall time of the requests.
    pub elapsed: Duration,
}

/// The `q`-quantile (0..=1) of `values`, by nearest rank.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

impl ChaosReport {
    /// Requests per second.
    pub fn throughput(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Every module's recovery times together.
    pub fn recoveries(&self) -> Vec<Duration> {
        self.modules
            .iter()
            .flat_map(|m| m.recoveries.iter().copied())
            .collect()
    }

    /// Every request answered, on time and as planned; every crash restarted; every planned
    /// panic seen as a crash.
    pub fn ok(&self) -> bool {
        self.unanswered.is_empty()
            && self.late.is_empty()
            && self.wrong.is_empty()
            && self.answered == self.sent
            && self.modules.iter().all(|m| {
                m.crashes == m.restarts
                    && m.crashed_invocations == m.planned_panics
                    && m.state == ModuleState::Running
            })
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "requests sent:        {}", self.sent)?;
        writeln!(f, "answered:             {}", self.answered)?;
        writeln!(f, "answered by deadline: {}", self.by_deadline)?;
        writeln!(
            f,
            "throughput:           {:.0} requests/s ({:.2} s)",
            self.throughput(),
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "decisions:")?;
        for (outcome, n) in &self.outcomes {
            writeln!(f, "  {n:>7}  {outcome}")?;
        }
        writeln!(f, "modules:")?;
        for m in &self.modules {
            writeln!(
                f,
                "  {:<12} state {:?}, crashes {}, restarts {}, panicked invocations {} (planned {}), planned hangs {}",
                m.name, m.state, m.crashes, m.restarts, m.crashed_invocations, m.planned_panics, m.planned_hangs
            )?;
        }
        let recoveries = self.recoveries();
        writeln!(
            f,
            "panic to serving again: median {}, p99 {} ({} restarts)",
            ms(quantile(&recoveries, 0.5)),
            ms(quantile(&recoveries, 0.99)),
            recoveries.len()
        )?;
        for i in &self.unanswered {
            writeln!(f, "UNANSWERED request {i}")?;
        }
        for (i, took) in &self.late {
            writeln!(f, "LATE request {i}: {took:?}")?;
        }
        for (i, expected, got) in self.wrong.iter().take(20) {
            writeln!(
                f,
                "WRONG request {i}: expected {expected:?}, got {}",
                serde_json::to_string(got).unwrap_or_default()
            )?;
        }
        if self.wrong.len() > 20 {
            writeln!(f, "... and {} more wrong answers", self.wrong.len() - 20)?;
        }
        write!(f, "{}", if self.ok() { "OK" } else { "FAILED" })
    }
}
