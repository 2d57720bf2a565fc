//! The two envelopes on the bus: one invocation of one module, and its reply.
//!
//! Trace context does not live here: it travels beside the envelope (NATS headers, HTTP
//! `traceparent`), as W3C Trace Context prescribes.

use crate::answers::SynapseError;
use crate::callbacks::{Callback, CallbackRequest, ModuleAnswer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One callback invocation sent to one module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Invocation {
    /// Correlates the invocation with the homeserver request and the decision record.
    pub request_id: String,
    /// Milliseconds since the Unix epoch after which no one waits for the answer.
    pub deadline_ms: u64,
    /// The callback and its arguments (`callback`, `args`).
    #[serde(flatten)]
    pub request: CallbackRequest,
}

impl Invocation {
    /// Decodes an invocation from JSON without the buffering of every value that
    /// `#[serde(flatten)]` costs `serde_json::from_slice`: the arguments are decoded straight
    /// into their callback's type. This is a worker's decode of every message. It decodes
    /// what `from_slice` decodes, to the same value; it also takes some text `from_slice`
    /// refuses, in values both ignore (an unknown field's number out of range, its invalid
    /// UTF-8) or nested deeper than 128 levels from the root but not from the arguments.
    pub fn from_json_slice(json: &[u8]) -> Result<Invocation, serde_json::Error> {
        #[derive(Deserialize)]
        struct Parts<'a> {
            request_id: String,
            deadline_ms: u64,
            callback: Callback,
            #[serde(borrow)]
            args: &'a serde_json::value::RawValue,
        }
        let parts: Parts<'_> = serde_json::from_slice(json)?;
        Ok(Invocation {
            request_id: parts.request_id,
            deadline_ms: parts.deadline_ms,
            request: CallbackRequest::from_args_slice(parts.callback, parts.args.get().as_bytes())?,
        })
    }
}

/// A module's reply to one invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvocationReply {
    /// The invocation's request id.
    pub request_id: String,
    /// The answer or a typed error.
    pub result: InvocationResult,
}

/// An answer, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvocationResult {
    /// The module answered (`{"answer": {"callback": ..., "answer": ...}}`).
    Answer(ModuleAnswer),
    /// The module did not answer usefully (`{"error": {"kind": ..., ...}}`).
    Error(InvocationError),
}

/// Why an invocation produced no usable answer. Each resolves through the module's failure
/// policy for the callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InvocationError {
    /// No answer within the module's timeout or the request's deadline.
    #[error("timed out after {after_ms} ms")]
    Timeout {
        /// How long the coordinator waited.
        after_ms: u64,
    },
    /// The module panicked or reported a fatal error while handling the invocation.
    #[error("crashed: {reason}")]
    Crashed {
        /// The panic message or fatal error.
        reason: String,
    },
    /// The module could not be reached (not running, no responders, mailbox closed).
    #[error("unavailable: {reason}")]
    Unavailable {
        /// What was unreachable.
        reason: String,
    },
    /// The module answered something that is not an answer to this callback.
    #[error("invalid answer: {detail}")]
    InvalidAnswer {
        /// What was wrong with it.
        detail: String,
    },
    /// The module raised an error (an exception, in Synapse's terms).
    #[error("failed: {message}")]
    Failed {
        /// The error's message.
        message: String,
        /// Set when the module raised a `SynapseError` meant for the client.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        synapse_error: Option<SynapseError>,
    },
}

impl InvocationError {
    /// A short name for logs, metrics and decision records.
    pub fn kind(&self) -> ErrorKind {
        match self {
            InvocationError::Timeout { .. } => ErrorKind::Timeout,
            InvocationError::Crashed { .. } => ErrorKind::Crashed,
            InvocationError::Unavailable { .. } => ErrorKind::Unavailable,
            InvocationError::InvalidAnswer { .. } => ErrorKind::InvalidAnswer,
            InvocationError::Failed { .. } => ErrorKind::Failed,
        }
    }
}

/// The kind of an [`InvocationError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// See [`InvocationError::Timeout`].
    Timeout,
    /// See [`InvocationError::Crashed`].
    Crashed,
    /// See [`InvocationError::Unavailable`].
    Unavailable,
    /// See [`InvocationError::InvalidAnswer`].
    InvalidAnswer,
    /// See [`InvocationError::Failed`].
    Failed,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Crashed => "crashed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::InvalidAnswer => "invalid",
            ErrorKind::Failed => "failed",
        })
    }
}
