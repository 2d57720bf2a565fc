//! The decision log, in the spirit of OPA's: one JSON record per dispatch (who answered
//! what, how fast, what won), written off the dispatch path to stdout, a file or a NATS
//! subject. Content (arguments, answers, messages) only when the config opts in.

use super::TelemetryError;
use crate::config::files::open_append;
use crate::config::telemetry::{
    DecisionLogConfig, DecisionOutput, ALWAYS_REDACTED, DEFAULT_DECISION_BUFFER,
    DEFAULT_DECISION_SUBJECT,
};
use arc_swap::ArcSwapOption;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One dispatch's record.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// Unique per dispatch; returned to the caller in `Glia-Decision-Id`.
    pub decision_id: String,
    /// When the dispatch began (RFC 3339, UTC).
    pub time: String,
    /// The callback.
    pub callback: &'static str,
    /// The request id (`X-Request-Id` / `Glia-Request-Id`).
    pub request_id: String,
    /// How the request came in (`http`, `http_antispam`, `nats`); absent for a library call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'static str>,
    /// The dispatch span's trace, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Time to decide.
    pub duration_ms: f64,
    /// Each module's part, in the order they were judged (priority order).
    pub modules: Vec<ModuleRecord>,
    /// The module whose answer (or failure policy) made the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// What was decided.
    pub result: ResultRecord,
    /// The callback's arguments (`include_content` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The redaction rules that removed part of `input` (a replay cannot re-decide it exactly).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// Modules asked in audit for this decision (their answers are in audit records).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audited: Vec<String>,
}

/// An audited module's part in a decision, written when it has answered (or failed), which
/// may be after the decision itself went out: what the decision would have been had the
/// module been enforced, beside what was applied.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// Always `"audit"`: tells these records from the decisions'.
    pub kind: &'static str,
    /// The decision it belongs to.
    pub decision_id: String,
    /// When the audit was settled (RFC 3339, UTC).
    pub time: String,
    /// The callback.
    pub callback: &'static str,
    /// The request id.
    pub request_id: String,
    /// The audited module.
    pub module: String,
    /// Why it was audited: `audit` (its mode), or `rollout` (its subject is outside the share).
    pub reason: &'static str,
    /// What the decision would have been with the module enforced.
    pub would: ResultRecord,
    /// What was decided and applied.
    pub applied: ResultRecord,
    /// Whether `would` differs from `applied`: the module would have changed the decision.
    pub changed: bool,
    /// From the dispatch's start until the would-be decision was reached.
    pub duration_ms: f64,
}

/// One line of the decision log.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum LogRecord {
    /// A dispatch's decision.
    Decision(Box<DecisionRecord>),
    /// An audited module's would-be decision.
    Audit(Box<AuditRecord>),
}

impl From<DecisionRecord> for LogRecord {
    fn from(record: DecisionRecord) -> Self {
        LogRecord::Decision(Box::new(record))
    }
}

impl From<AuditRecord> for LogRecord {
    fn from(record: AuditRecord) -> Self {
        LogRecord::Audit(Box::new(record))
    }
}

/// One module's part in a dispatch.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleRecord {
    /// The module.
    pub module: String,
    /// What became of its invocation (`allow`, `deny`, `timeout`, `skipped`, ...).
    pub outcome: &'static str,
    /// Its deny's errcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<String>,
    /// Time to its answer or failure (absent when skipped or left in the background).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The failure policy that resolved a failure (`allow`, `deny`, `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'static str>,
    /// Its answer as it came (`include_content` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    /// Why it failed (`include_content` only: messages may quote user data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a dispatch decided.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRecord {
    /// `allow`, `deny`, `error`, `value`, `none` or `rejected`.
    pub decision: &'static str,
    /// The errcode of a deny or an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<String>,
    /// The HTTP status of an error or of a deny with its own status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The reply as sent (`include_content` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Value>,
}

/// Hands records to the writer without waiting for it.
pub struct DecisionLog {
    sender: ArcSwapOption<mpsc::Sender<LogRecord>>,
    writer: Mutex<Option<Writer>>,
    include_content: bool,
    redact: Vec<String>,
}

enum Writer {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// The error for a decision log file that cannot be opened.
fn cannot_open(path: &std::path::Path, e: impl std::fmt::Display) -> TelemetryError {
    TelemetryError::Key {
        key: "telemetry.decision_log.path".into(),
        message: format!("cannot open the decision log {}: {e}", path.display()),
    }
}

/// What `glia check-config` can check of an `output: file` log without creating it: an
/// existing file must be a regular file that opens for appending (a FIFO or a device is
/// refused: `output: stdout` writes to a pipe), a new one needs its directory.
pub fn check_path(config: &DecisionLogConfig) -> Result<(), TelemetryError> {
    let (DecisionOutput::File, Some(path)) = (&config.output, &config.path) else {
        return Ok(());
    };
    if path.exists() {
        return open_append(path, false)
            .map(drop)
            .map_err(|e| cannot_open(path, e));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(cannot_open(
            path,
            format_args!("the directory {} does not exist", dir.display()),
        ))
    }
}

impl DecisionLog {
    /// Starts the writer the config asks for; `None` for `output: none`. `nats` is the bus's
    /// connection (required for `output: nats`). Call within a tokio runtime.
    pub fn start(
        config: &DecisionLogConfig,
        nats: Option<async_nats::Client>,
    ) -> Result<Option<DecisionLog>, TelemetryError> {
        let (sender, receiver) = mpsc::channel(config.buffer.unwrap_or(DEFAULT_DECISION_BUFFER));
        let writer = match config.output {
            DecisionOutput::None => return Ok(None),
            DecisionOutput::Stdout => Writer::Thread(lines(receiver, Box::new(std::io::stdout()))),
            DecisionOutput::File => {
                let path = config.path.as_ref().ok_or_else(|| {
                    TelemetryError::Setting("decision_log.output: file needs a path".into())
                })?;
                let file = open_append(path, true).map_err(|e| cannot_open(path, e))?;
                Writer::Thread(lines(receiver, Box::new(file)))
            }
            DecisionOutput::Nats => {
                let client = nats.ok_or_else(|| {
                    TelemetryError::Setting("decision_log.output: nats needs the NATS bus".into())
                })?;
                let subject = config
                    .subject
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DECISION_SUBJECT.to_owned());
                Writer::Task(tokio::spawn(publish(receiver, client, subject)))
            }
        };
        Ok(Some(DecisionLog {
            sender: ArcSwapOption::from_pointee(sender),
            writer: Mutex::new(Some(writer)),
            include_content: config.include_content,
            redact: ALWAYS_REDACTED
                .iter()
                .map(|k| k.to_string())
                .chain(config.redact.iter().cloned())
                .collect(),
        }))
    }

    /// Whether records carry content.
    pub fn include_content(&self) -> bool {
        self.include_content
    }

    /// Removes from `input` (a callback's arguments) what records must not carry; returns
    /// the rules that removed something.
    pub fn redact(&self, input: &mut Value) -> Vec<String> {
        self.redact
            .iter()
            .filter(|rule| redact(input, rule))
            .cloned()
            .collect()
    }

    /// Queues a record; `false` if the writer is behind and it was dropped.
    pub fn write(&self, record: impl Into<LogRecord>) -> bool {
        self.sender
            .load()
            .as_ref()
            .is_some_and(|s| s.try_send(record.into()).is_ok())
    }

    /// Writes what is queued and stops the writer; later records are dropped.
    pub async fn close(&self) {
        self.sender.store(None::<Arc<_>>);
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        match writer {
            Some(Writer::Thread(handle)) => {
                let _ = tokio::task::spawn_blocking(move || handle.join()).await;
            }
            Some(Writer::Task(handle)) => {
                let _ = handle.await;
            }
            None => {}
        }
    }
}

/// Removes what `rule` names from `value`: a dotted path from its root, or a key name at
/// any depth. Whether anything was removed.
pub fn redact(value: &mut Value, rule: &str) -> bool {
    match rule.rsplit_once('.') {
        Some((parent, key)) => {
            let pointer = format!("/{}", parent.replace('.', "/"));
            value
                .pointer_mut(&pointer)
                .and_then(Value::as_object_mut)
                .is_some_and(|o| o.remove(key).is_some())
        }
        None => remove_everywhere(value, rule),
    }
}

fn remove_everywhere(value: &mut Value, key: &str) -> bool {
    match value {
        Value::Object(object) => {
            let here = object.remove(key).is_some();
            let mut below = false;
            for v in object.values_mut() {
                below |= remove_everywhere(v, key);
            }
            here || below
        }
        Value::Array(items) => {
            // Every item, not up to the first that had the key.
            let mut found = false;
            for v in items {
                found |= remove_everywhere(v, key);
            }
            found
        }
        _ => false,
    }
}

/// One JSON object per line on a thread of its own, flushed whenever the queue runs dry.
fn lines(
    mut receiver: mpsc::Receiver<LogRecord>,
    out: Box<dyn Write + Send>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("glia-decision-log".into())
        .spawn(move || {
            let mut out = std::io::BufWriter::new(out);
            let mut failed = false;
            while let Some(record) = receiver.blocking_recv() {
                let mut write = |record: &LogRecord| -> std::io::Result<()> {
                    serde_json::to_writer(&mut out, record)?;
                    out.write_all(b"\n")
                };
                let mut result = write(&record);
                while result.is_ok() {
                    match receiver.try_recv() {
                        Ok(next) => result = write(&next),
                        Err(_) => break,
                    }
                }
                let result = result.and_then(|()| out.flush());
                if let Err(e) = result {
                    // Said once: a full disk would otherwise log on every decision.
                    if !failed {
                        tracing::error!(error = %e, "cannot write the decision log");
                    }
                    failed = true;
                }
            }
        })
        .expect("can spawn the decision log thread")
}

async fn publish(
    mut receiver: mpsc::Receiver<LogRecord>,
    client: async_nats::Client,
    subject: String,
) {
    while let Some(record) = receiver.recv().await {
        let Ok(body) = serde_json::to_vec(&record) else {
            continue;
        };
        if let Err(e) = client.publish(subject.clone(), body.into()).await {
            tracing::warn!(error = %e, %subject, "cannot publish a decision record");
        }
    }
    let until = std::time::Instant::now() + crate::nats_client::FLUSH_TIMEOUT;
    crate::nats_client::flush(&client, until).await;
}
