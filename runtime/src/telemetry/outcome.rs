//! The vocabulary of traces, metrics and decision records: what became of one invocation,
//! and what a whole dispatch decided.

use glia_bus_schema::{ErrorKind, InvocationError, ReplyKind};

/// What became of one module invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered without objecting.
    Allow,
    /// Answered with a refusal.
    Deny,
    /// Answered with a value (a user id, a name, presence targets, edits).
    Answer,
    /// Answered that it has no opinion.
    None,
    /// No answer within its timeout or the request's deadline.
    Timeout,
    /// Crashed (panic, fatal error, hang past the watchdog).
    Crashed,
    /// Could not be reached (no worker, failed, shutting down).
    Unavailable,
    /// Answered something that is not a valid answer.
    Invalid,
    /// Raised an error.
    Failed,
    /// Not waited for: an earlier module in priority order had decided.
    Skipped,
    /// A notification left to finish in the background (its own outcome is counted when it
    /// ends).
    Background,
    /// Not invoked: a sequential module after one that decided (Synapse would not have
    /// called it either).
    NotAsked,
}

impl Outcome {
    /// Every outcome, in discriminant order.
    pub const ALL: [Outcome; 12] = [
        Outcome::Allow,
        Outcome::Deny,
        Outcome::Answer,
        Outcome::None,
        Outcome::Timeout,
        Outcome::Crashed,
        Outcome::Unavailable,
        Outcome::Invalid,
        Outcome::Failed,
        Outcome::Skipped,
        Outcome::Background,
        Outcome::NotAsked,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Answer => "answer",
            Outcome::None => "none",
            Outcome::Timeout => "timeout",
            Outcome::Crashed => "crashed",
            Outcome::Unavailable => "unavailable",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Background => "background",
            Outcome::NotAsked => "not_asked",
        }
    }

    /// The outcome of a failed invocation.
    pub fn of_error(error: &InvocationError) -> Outcome {
        match error.kind() {
            ErrorKind::Timeout => Outcome::Timeout,
            ErrorKind::Crashed => Outcome::Crashed,
            ErrorKind::Unavailable => Outcome::Unavailable,
            ErrorKind::InvalidAnswer => Outcome::Invalid,
            ErrorKind::Failed => Outcome::Failed,
        }
    }
}

/// What a dispatch decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyResult {
    /// Let through.
    Allow,
    /// Refused.
    Deny,
    /// Synapse would fail the request.
    Error,
    /// A module supplied a value.
    Value,
    /// No module had an opinion.
    None,
    /// The request was refused before any module was asked (a missing login field).
    Rejected,
}

impl ReplyResult {
    /// Every result, in discriminant order.
    pub const ALL: [ReplyResult; 6] = [
        ReplyResult::Allow,
        ReplyResult::Deny,
        ReplyResult::Error,
        ReplyResult::Value,
        ReplyResult::None,
        ReplyResult::Rejected,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyResult::Allow => "allow",
            ReplyResult::Deny => "deny",
            ReplyResult::Error => "error",
            ReplyResult::Value => "value",
            ReplyResult::None => "none",
            ReplyResult::Rejected => "rejected",
        }
    }
}

impl From<ReplyKind> for ReplyResult {
    fn from(kind: ReplyKind) -> Self {
        match kind {
            ReplyKind::Allow => ReplyResult::Allow,
            ReplyKind::Deny => ReplyResult::Deny,
            ReplyKind::Error => ReplyResult::Error,
            ReplyKind::Value => ReplyResult::Value,
            ReplyKind::Empty => ReplyResult::None,
        }
    }
}
