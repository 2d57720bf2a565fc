//! What a replay found: which recorded decisions the candidate config decides otherwise,
//! totalled by callback, by module and by kind of change, with examples; as text for people
//! and as JSON for scripts.

use super::records::{Recorded, Skipped};
use crate::coordinator::audit::same_reply;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How a decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Allowed then, denied now.
    AllowToDeny,
    /// Denied then, allowed now.
    DenyToAllow,
    /// Denied both times, with another errcode.
    ErrcodeChanged,
    /// Any other difference (a value, an error, a replacement event).
    ReplyChanged,
}

impl Change {
    /// As the text report says it.
    fn label(self) -> &'static str {
        match self {
            Change::AllowToDeny => "allow -> deny",
            Change::DenyToAllow => "deny -> allow",
            Change::ErrcodeChanged => "errcode changed",
            Change::ReplyChanged => "reply changed",
        }
    }

    /// The change from `old` to `new` (two `result` records), if there is one.
    pub fn between(old: &Value, new: &Value) -> Option<Change> {
        let reply = |r: &Value| r.get("reply").cloned().unwrap_or(Value::Null);
        let field = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        let (was, now) = (field(old, "decision"), field(new, "decision"));
        let same = match (old.get("reply"), new.get("reply")) {
            (Some(_), Some(_)) => same_reply(&reply(old), &reply(new)),
            // A record without the reply: compare what it kept.
            _ => was == now && field(old, "errcode") == field(new, "errcode"),
        };
        if same {
            return None;
        }
        Some(match (was.as_deref(), now.as_deref()) {
            (Some("allow"), Some("deny")) => Change::AllowToDeny,
            (Some("deny"), Some("allow")) => Change::DenyToAllow,
            (Some("deny"), Some("deny")) if field(old, "errcode") != field(new, "errcode") => {
                Change::ErrcodeChanged
            }
            _ => Change::ReplyChanged,
        })
    }
}

/// Replayed and changed decisions of one callback.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// Re-decided.
    pub replayed: usize,
    /// Decided otherwise now.
    pub changed: usize,
}

/// One changed decision, for the report's examples.
#[derive(Debug, Serialize)]
pub struct Example {
    /// The record's line in the log.
    pub line: usize,
    /// The recorded decision's id.
    pub decision_id: String,
    /// The callback.
    pub callback: &'static str,
    /// How it changed.
    pub change: Change,
    /// The module the change is put down to: the one deciding now, else the one that did.
    pub module: Option<String>,
    /// What was decided then (`result` of the record).
    pub recorded: Value,
    /// What the candidate decides.
    pub replayed: Value,
}

/// A replay's findings.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Decisions re-decided.
    pub replayed: usize,
    /// Of those, decided otherwise now.
    pub changed: usize,
    /// By callback.
    pub by_callback: BTreeMap<&'static str, Counts>,
    /// Changes by the module they are put down to (`(none)` when no module decided).
    pub by_module: BTreeMap<String, usize>,
    /// Changes by kind.
    pub by_change: BTreeMap<Change, usize>,
    /// Every change, in log order (the text report shows the first few per kind).
    pub changes: Vec<Example>,
    /// What was not replayed, and why.
    pub skipped: Skipped,
}

impl Report {
    /// Counts one re-decided record; `new` is the candidate's `result` and `winner`.
    pub fn add(&mut self, recorded: &Recorded, new: Value, winner: Option<String>) {
        let callback = recorded.request.callback().name();
        self.replayed += 1;
        let counts = self.by_callback.entry(callback).or_default();
        counts.replayed += 1;
        let Some(change) = Change::between(&recorded.result, &new) else {
            return;
        };
        counts.changed += 1;
        self.changed += 1;
        let module = winner.or_else(|| recorded.winner.clone());
        let key = module.clone().unwrap_or_else(|| "(none)".into());
        *self.by_module.entry(key).or_default() += 1;
        *self.by_change.entry(change).or_default() += 1;
        self.changes.push(Example {
            line: recorded.line,
            decision_id: recorded.decision_id.clone(),
            callback,
            change,
            module,
            recorded: recorded.result.clone(),
            replayed: new,
        });
    }

    /// The report for people: totals, then up to `examples` changes of each kind.
    pub fn text(&self, examples: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "replayed {} decisions: {} would change, {} would not",
            self.replayed,
            self.changed,
            self.replayed - self.changed
        );
        let _ = writeln!(out, "\nby callback (changed / replayed):");
        for (callback, c) in &self.by_callback {
            let _ = writeln!(out, "  {callback}: {} / {}", c.changed, c.replayed);
        }
        if self.changed > 0 {
            let _ = writeln!(out, "\nby module:");
            for (module, n) in &self.by_module {
                let _ = writeln!(out, "  {module}: {n}");
            }
            self.text_changes(&mut out, examples);
        }
        self.text_skipped(&mut out);
        out
    }

    fn text_changes(&self, out: &mut String, examples: usize) {
        let _ = writeln!(out, "\nby change:");
        for (change, n) in &self.by_change {
            let _ = writeln!(out, "  {}: {n}", change.label());
            for e in self
                .changes
                .iter()
                .filter(|e| e.change == *change)
                .take(examples)
            {
                let _ = writeln!(
                    out,
                    "    line {} ({}, decision {}): {} -> {}{}",
                    e.line,
                    e.callback,
                    e.decision_id,
                    brief(&e.recorded),
                    brief(&e.replayed),
                    e.module
                        .as_ref()
                        .map(|m| format!(" [{m}]"))
                        .unwrap_or_default(),
                );
            }
        }
    }

    fn text_skipped(&self, out: &mut String) {
        let s = &self.skipped;
        let total = s.no_arguments + s.redacted + s.unreadable;
        if total == 0 && s.audit_records == 0 {
            return;
        }
        let _ = writeln!(out, "\nnot replayed:");
        for (n, why) in [
            (
                s.no_arguments,
                "decisions recorded without arguments (set telemetry.decision_log.include_content)",
            ),
            (s.redacted, "decisions whose arguments were redacted"),
            (
                s.audit_records,
                "audit records (would-be decisions, not decisions)",
            ),
            (s.unreadable, "unreadable lines"),
        ] {
            if n > 0 {
                let _ = writeln!(out, "  {n} {why}");
            }
        }
        for e in &s.errors {
            let _ = writeln!(out, "    {e}");
        }
    }
}

/// A result record in a few words: `deny (M_FORBIDDEN)`, `allow`, `value`.
fn brief(result: &Value) -> String {
    let decision = result
        .get("decision")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match result.get("errcode").and_then(Value::as_str) {
        Some(errcode) => format!("{decision} ({errcode})"),
        None => decision.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_are_told_apart_by_kind() {
        let allow = json!({"decision": "allow", "reply": {"decision": "allow"}});
        let deny = |e: &str| {
            json!({"decision": "deny", "errcode": e,
                "reply": {"decision": "deny", "errcode": e, "module": "m"}})
        };
        assert_eq!(Change::between(&allow, &allow), None);
        assert_eq!(
            Change::between(&allow, &deny("M_FORBIDDEN")),
            Some(Change::AllowToDeny)
        );
        assert_eq!(
            Change::between(&deny("M_FORBIDDEN"), &allow),
            Some(Change::DenyToAllow)
        );
        assert_eq!(
            Change::between(&deny("M_FORBIDDEN"), &deny("M_LIMIT_EXCEEDED")),
            Some(Change::ErrcodeChanged)
        );
        let value = |v: i64| json!({"decision": "value", "reply": {"value": v}});
        assert_eq!(
            Change::between(&value(1), &value(2)),
            Some(Change::ReplyChanged)
        );
        let mut other_module = deny("M_FORBIDDEN");
        other_module["reply"]["module"] = json!("n");
        assert_eq!(Change::between(&deny("M_FORBIDDEN"), &other_module), None);
    }
}
