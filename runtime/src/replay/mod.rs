//! `glia replay`: re-decides recorded decisions (a decision log written with
//! `include_content`) under a candidate config, whose modules run for real (built-in,
//! Python-hosted, remote over NATS), at a bounded rate, and reports which decisions change.
//! As OPA replays its decision logs against a new policy before it is rolled out.

pub mod records;
pub mod report;

use crate::app::Glia;
use crate::config::GliaConfig;
use crate::coordinator::trace::result_record;
use futures::StreamExt;
use records::Recorded;
use report::Report;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How a replay runs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Decisions re-decided per second, at most.
    pub rate: f64,
    /// Decisions re-decided at once, at most.
    pub concurrency: usize,
    /// Show progress on standard error (when it is a terminal).
    pub progress: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            rate: 200.0,
            concurrency: 16,
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// Starts the candidate `config` (its decision log off: a replay records nothing) and
/// re-decides every replayable record of the log at `decisions`.
pub async fn run(
    mut config: GliaConfig,
    decisions: &Path,
    options: &ReplayOptions,
) -> Result<Report, String> {
    if !(options.rate > 0.0 && options.rate.is_finite()) {
        return Err(format!("--rate must be above 0, not {}", options.rate));
    }
    let (records, skipped) = records::read(decisions)?;
    config.telemetry.decision_log = Default::default();
    let glia = Glia::start(config).await.map_err(|e| e.to_string())?;
    let mut report = redecide(&glia, &records, options).await;
    report.skipped = skipped;
    glia.shutdown(Duration::from_secs(5)).await;
    Ok(report)
}

/// Dispatches each record's request to `glia`, paced to `options.rate`, and compares.
async fn redecide(glia: &Glia, records: &[Recorded], options: &ReplayOptions) -> Report {
    let coordinator = glia.coordinator();
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let mut answers = futures::stream::iter(records.iter().enumerate())
        .map(|(i, recorded)| async move {
            tokio::time::sleep_until((start + interval.mul_f64(i as f64)).into()).await;
            let meta = coordinator.new_meta();
            let result = coordinator.dispatch(recorded.request.clone(), meta).await;
            let (_, new, winner) = result_record(result.as_ref(), true);
            let winner = winner.map(str::to_owned);
            (
                recorded,
                serde_json::to_value(new).unwrap_or_default(),
                winner,
            )
        })
        .buffered(options.concurrency.max(1));
    let mut report = Report::default();
    let mut progress = Progress::new(options.progress, records.len());
    while let Some((recorded, new, winner)) = answers.next().await {
        report.add(recorded, new, winner);
        progress.tick(report.replayed, report.changed);
    }
    progress.done();
    report
}

/// A one-line progress bar on standard error, redrawn at most a few times a second.
struct Progress {
    shown: bool,
    total: usize,
    started: Instant,
    drawn: Instant,
}

impl Progress {
    fn new(shown: bool, total: usize) -> Self {
        let now = Instant::now();
        Progress {
            shown,
            total,
            started: now,
            drawn: now,
        }
    }

    fn tick(&mut self, done: usize, changed: usize) {
        if !self.shown || (self.drawn.elapsed() < Duration::from_millis(200) && done < self.total) {
            return;
        }
        self.drawn = Instant::now();
        let width = 30;
        let filled = (done * width).checked_div(self.total).unwrap_or(width);
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r[{}{}] {done}/{} decisions, {changed} changed, {rate:.0}/s ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            self.total,
        );
        let _ = std::io::stderr().flush();
    }

    fn done(&self) {
        if self.shown {
            eprintln!();
        }
    }
}
