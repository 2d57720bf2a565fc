//! Reading a decision log for a replay: each decision record whose arguments were kept
//! becomes a request to re-decide; everything else is counted by why it cannot be.

use glia_bus_schema::CallbackRequest;
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The longest record line read (a longer one is counted unreadable, not held in memory).
const MAX_LINE: u64 = 16 << 20;

/// How many unreadable lines are quoted in the report.
const QUOTED_ERRORS: usize = 5;

/// A recorded decision to re-decide.
pub struct Recorded {
    /// Its line in the log (from 1).
    pub line: usize,
    /// Its decision id.
    pub decision_id: String,
    /// The arguments, as a request.
    pub request: CallbackRequest,
    /// What was decided: the record's `result`.
    pub result: Value,
    /// The module that decided, if one did.
    pub winner: Option<String>,
}

/// Records of the log that were not replayed, by why.
#[derive(Debug, Default, Serialize)]
pub struct Skipped {
    /// Decision records without arguments (`include_content` was off).
    pub no_arguments: usize,
    /// Decision records whose arguments were partly redacted (`decision_log.redact`).
    pub redacted: usize,
    /// Audit records (an audited module's would-be decision, not a decision).
    pub audit_records: usize,
    /// Lines that are not decision records (or name no known callback).
    pub unreadable: usize,
    /// The first few of those, as `line N: error`.
    pub errors: Vec<String>,
}

/// Reads the decision log at `path` (`-`: standard input).
pub fn read(path: &Path) -> Result<(Vec<Recorded>, Skipped), String> {
    let input: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Box::new(file)
    };
    let mut reader = BufReader::new(input);
    let mut records = Vec::new();
    let mut skipped = Skipped::default();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if read == 0 {
            break;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        match classify(number, &line) {
            Ok(record) => records.push(record),
            Err(Skip::Audit) => skipped.audit_records += 1,
            Err(Skip::NoArguments) => skipped.no_arguments += 1,
            Err(Skip::Redacted) => skipped.redacted += 1,
            Err(Skip::Unreadable(error)) => {
                skipped.unreadable += 1;
                if skipped.errors.len() < QUOTED_ERRORS {
                    skipped.errors.push(format!("line {number}: {error}"));
                }
                if !line.ends_with(b"\n") && read as u64 == MAX_LINE {
                    skip_rest_of_line(&mut reader)?;
                }
            }
        }
    }
    Ok((records, skipped))
}

/// Why a line is not replayed.
enum Skip {
    Audit,
    NoArguments,
    Redacted,
    Unreadable(String),
}

/// One line of the log as a record to replay.
fn classify(number: usize, line: &[u8]) -> Result<Recorded, Skip> {
    let mut record: Value =
        serde_json::from_slice(line).map_err(|e| Skip::Unreadable(e.to_string()))?;
    if record.get("kind").and_then(Value::as_str) == Some("audit") {
        return Err(Skip::Audit);
    }
    let callback = record
        .get("callback")
        .and_then(Value::as_str)
        .ok_or_else(|| Skip::Unreadable("not a decision record (no callback)".into()))?
        .to_owned();
    if record
        .get("redacted")
        .is_some_and(|r| r.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err(Skip::Redacted);
    }
    let Some(input) = record.get_mut("input").map(Value::take) else {
        return Err(Skip::NoArguments);
    };
    let request: CallbackRequest =
        serde_json::from_value(serde_json::json!({"callback": callback, "args": input}))
            .map_err(|e| Skip::Unreadable(format!("{callback}: {e}")))?;
    Ok(Recorded {
        line: number,
        decision_id: string(&record, "decision_id").unwrap_or_default(),
        request,
        result: record
            .get_mut("result")
            .map(Value::take)
            .unwrap_or_default(),
        winner: string(&record, "winner"),
    })
}

fn string(record: &Value, key: &str) -> Option<String> {
    record.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Reads past the rest of an over-long line.
fn skip_rest_of_line(reader: &mut impl BufRead) -> Result<(), String> {
    let mut sink = Vec::new();
    loop {
        sink.clear();
        let read = reader
            .take(MAX_LINE)
            .read_until(b'\n', &mut sink)
            .map_err(|e| e.to_string())?;
        if read == 0 || sink.ends_with(b"\n") {
            return Ok(());
        }
    }
}
