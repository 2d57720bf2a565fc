//! What the coordinator answers the homeserver: the result Synapse's module system would have
//! reached, and which module decided it.

use crate::answers::InterestedUsers;
use crate::shapes::{JsonObject, RegistrationBehaviour, UserPresenceState};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The reply to every yes/no callback (and to `check_event_allowed`, `on_create_room` and the
/// notifications): allow, deny, or error (what Synapse would turn into a 5xx).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Let the operation through.
    Allow {
        /// `check_event_allowed`: the event to use instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replacement: Option<JsonObject>,
        /// `on_create_room`: the request body after every module's edits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_content: Option<JsonObject>,
        /// The module whose answer made the result (a replacement), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        module: Option<String>,
    },
    /// Block the operation, as Synapse would.
    Deny {
        /// The errcode the client sees.
        errcode: String,
        /// The message the client sees.
        error: String,
        /// Extra fields merged into the client's error body.
        #[serde(default)]
        fields: JsonObject,
        /// The module that denied, or whose failure policy denied.
        module: String,
        /// HTTP status when it is not Synapse's usual one for this callback (a module's own
        /// `SynapseError`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// The message is the module's own text (the deprecated plain-string answer of
        /// `check_event_for_spam`), which Synapse shows only when it is handed the string.
        #[serde(default, skip_serializing_if = "is_false")]
        module_message: bool,
    },
    /// Synapse would fail the request (an exception propagated, or a failure policy `error`).
    Error(Failure),
}

impl Decision {
    /// Allow with nothing attached: `{"decision": "allow"}`.
    pub const ALLOW: Decision = Decision::Allow {
        replacement: None,
        request_content: None,
        module: None,
    };

    /// Whether this lets the operation through.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// A dispatch glia decided must fail, as Synapse fails a request when a module raises: what
/// the homeserver should answer its client. (When glia cannot decide at all, the caller gets
/// no reply but an HTTP error, or no answer: only then may a homeserver apply a fail-open
/// default of its own.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Failure {
    /// HTTP status (500 unless a module raised its own `SynapseError`).
    pub status: u16,
    /// Matrix errcode.
    pub errcode: String,
    /// Message.
    pub error: String,
    /// Extra fields of a module's `SynapseError` (e.g. `retry_after_ms`).
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub fields: JsonObject,
    /// The module that failed.
    pub module: String,
    /// `true`: a module's own `SynapseError`, to be raised to the client as is (status,
    /// errcode, message, fields). `false`: the module failed (it raised another exception,
    /// timed out, crashed, ... under policy `error`); the homeserver answers as it answers any
    /// module exception (Synapse: 500 `M_UNKNOWN` "Internal server error").
    #[serde(default, skip_serializing_if = "is_false")]
    pub synapse_error: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A reply that is either the callback's own value or a failure (`{"decision": "error", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Outcome_for_{T}")]
pub enum Outcome<T> {
    /// The failure, tagged `"decision": "error"` so it is told apart from values.
    Failed(FailedOutcome),
    /// The callback's value.
    Value(T),
}

/// `{"decision": "error", ...}` for callbacks whose replies are not decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailedOutcome {
    /// Always `"error"`.
    pub decision: ErrorTag,
    /// What failed.
    #[serde(flatten)]
    pub failure: Failure,
}

/// The `"error"` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorTag {
    /// `"error"`.
    Error,
}

impl<T> From<Failure> for Outcome<T> {
    fn from(failure: Failure) -> Self {
        Outcome::Failed(FailedOutcome {
            decision: ErrorTag::Error,
            failure,
        })
    }
}

/// `check_registration_for_spam`: the behaviour Synapse applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegistrationReply {
    /// `allow`, `shadow_ban` or `deny`.
    pub behaviour: RegistrationBehaviour,
    /// The module that chose a non-allow behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// `is_user_expired`: `null` when no module had an opinion (Synapse then uses its built-in
/// account validity, or `false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExpiryReply {
    /// The first non-null answer.
    pub expired: Option<bool>,
    /// The module that gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Until when (milliseconds since the Unix epoch) this reply holds for this user: the
    /// earliest `valid_until_ms` of the modules consulted (those before the deciding one
    /// and it, or all of them when none had an opinion); absent when any of them did not
    /// say, or failed. A bridge may reuse the reply until then, never after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_ms: Option<u64>,
    /// With `valid_until_ms`: the generation of glia's routing (its modules, their config
    /// and plans; a new one after every reload) the reply was decided under. The reply
    /// holds only while glia's replies name this generation (over HTTP, each callback
    /// response's `Glia-Generation` header does): a reload ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
}

impl ExpiryReply {
    /// A reply holding until `valid_until_ms`, if some, for the routing `generation`.
    pub fn lasting(
        expired: Option<bool>,
        module: Option<String>,
        valid_until_ms: Option<u64>,
        generation: &str,
    ) -> Self {
        ExpiryReply {
            expired,
            module,
            generation: valid_until_ms.map(|_| generation.to_owned()),
            valid_until_ms,
        }
    }
}

/// `get_users_for_states`: the union of every router's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsersForStatesReply {
    /// User id to the presence states they should also receive.
    pub users: BTreeMap<String, Vec<UserPresenceState>>,
}

/// `get_interested_users`: the union of every router's answer, or `"ALL"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterestedUsersReply {
    /// Sorted, without duplicates; or `"ALL"`.
    pub users: InterestedUsers,
}

/// `check_auth` / `check_3pid_auth`: who authenticated, or `null` (Synapse then falls back
/// to its own password database, or 403).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthReply {
    /// The authenticated user.
    pub user_id: Option<String>,
    /// The module that authenticated them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// That module's post-login callback, if it returned one: Synapse is handed a callable
    /// that sends the login result back in a `post_login` call naming `module` and this
    /// handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_login: Option<String>,
}

/// `get_username_for_registration` / `get_displayname_for_registration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NameReply {
    /// The first string a module gave, or `null` (Synapse then uses the client's choice).
    pub name: Option<String>,
    /// The module that gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// A single-slot callback's reply: the one registered module's value, or `null` when no module
/// registered it (Synapse then uses its built-in behaviour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "SlotReply_for_{T}")]
pub struct SlotReply<T> {
    /// The module's value.
    pub value: Option<T>,
    /// The module that holds the slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// The first value a module gave (`get_media_config_for_user`, `get_media_upload_limits_for_user`,
/// `get_ratelimit_override_for_user`), or `null` when none did (Synapse then uses its own
/// configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "ValueReply_for_{T}")]
pub struct ValueReply<T> {
    /// The value.
    pub value: Option<T>,
    /// The module that gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// `add_field_to_unsigned`: every module's fields merged in order (a later module's key
/// replaces an earlier one's); the homeserver puts them beneath the event's own `unsigned`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UnsignedReply {
    /// The merged fields (empty when no module added any).
    pub fields: JsonObject,
}

/// What a reply amounts to, whatever its callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// The operation goes ahead (yes/no callbacks, notifications).
    Allow,
    /// The operation is refused (or, for registration, shadow-banned).
    Deny,
    /// Synapse would fail the request.
    Error,
    /// A module supplied a value (a user id, a name, presence targets, an expiry).
    Value,
    /// No module had an opinion: Synapse falls back to its own behaviour.
    Empty,
}

impl ReplyKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Allow => "allow",
            ReplyKind::Deny => "deny",
            ReplyKind::Error => "error",
            ReplyKind::Value => "value",
            ReplyKind::Empty => "none",
        }
    }
}

/// A reply reduced to its kind and who decided it, without its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplySummary<'a> {
    /// What it amounts to.
    pub kind: ReplyKind,
    /// The errcode of a deny or an error.
    pub errcode: Option<&'a str>,
    /// The HTTP status of an error, or of a deny with a status of its own.
    pub status: Option<u16>,
    /// The module whose answer (or failure) made the reply.
    pub module: Option<&'a str>,
}

impl<'a> ReplySummary<'a> {
    fn of(kind: ReplyKind, module: Option<&'a str>) -> Self {
        ReplySummary {
            kind,
            errcode: None,
            status: None,
            module,
        }
    }
}

/// Reduces a reply type to a [`ReplySummary`].
pub trait Summarize {
    /// The summary.
    fn summary(&self) -> ReplySummary<'_>;

    /// The reply itself when it is a [`Decision`] (yes/no callbacks), for callers that speak
    /// only decisions (synapse-http-antispam's ingress).
    fn decision(&self) -> Option<&Decision> {
        None
    }
}

impl Summarize for Decision {
    fn decision(&self) -> Option<&Decision> {
        Some(self)
    }

    fn summary(&self) -> ReplySummary<'_> {
        match self {
            Decision::Allow { module, .. } => ReplySummary::of(ReplyKind::Allow, module.as_deref()),
            Decision::Deny {
                errcode,
                module,
                status,
                ..
            } => ReplySummary {
                kind: ReplyKind::Deny,
                errcode: Some(errcode),
                status: *status,
                module: Some(module),
            },
            Decision::Error(f) => f.summary(),
        }
    }
}

impl Summarize for Failure {
    fn summary(&self) -> ReplySummary<'_> {
        ReplySummary {
            kind: ReplyKind::Error,
            errcode: Some(&self.errcode),
            status: Some(self.status),
            module: Some(&self.module),
        }
    }
}

impl<T: Summarize> Summarize for Outcome<T> {
    fn summary(&self) -> ReplySummary<'_> {
        match self {
            Outcome::Failed(f) => f.failure.summary(),
            Outcome::Value(v) => v.summary(),
        }
    }
}

impl Summarize for RegistrationReply {
    fn summary(&self) -> ReplySummary<'_> {
        let kind = match self.behaviour {
            RegistrationBehaviour::Allow => ReplyKind::Allow,
            RegistrationBehaviour::ShadowBan | RegistrationBehaviour::Deny => ReplyKind::Deny,
        };
        ReplySummary::of(kind, self.module.as_deref())
    }
}

fn value_or_empty<'a, T>(value: &Option<T>, module: &'a Option<String>) -> ReplySummary<'a> {
    let kind = if value.is_some() {
        ReplyKind::Value
    } else {
        ReplyKind::Empty
    };
    ReplySummary::of(kind, module.as_deref())
}

impl Summarize for ExpiryReply {
    fn summary(&self) -> ReplySummary<'_> {
        value_or_empty(&self.expired, &self.module)
    }
}

impl Summarize for AuthReply {
    fn summary(&self) -> ReplySummary<'_> {
        value_or_empty(&self.user_id, &self.module)
    }
}

impl Summarize for NameReply {
    fn summary(&self) -> ReplySummary<'_> {
        value_or_empty(&self.name, &self.module)
    }
}

impl<T> Summarize for SlotReply<T> {
    fn summary(&self) -> ReplySummary<'_> {
        value_or_empty(&self.value, &self.module)
    }
}

impl<T> Summarize for ValueReply<T> {
    fn summary(&self) -> ReplySummary<'_> {
        value_or_empty(&self.value, &self.module)
    }
}

impl Summarize for UnsignedReply {
    fn summary(&self) -> ReplySummary<'_> {
        let kind = if self.fields.is_empty() {
            ReplyKind::Empty
        } else {
            ReplyKind::Value
        };
        ReplySummary::of(kind, None)
    }
}

impl Summarize for UsersForStatesReply {
    fn summary(&self) -> ReplySummary<'_> {
        ReplySummary::of(ReplyKind::Value, None)
    }
}

impl Summarize for InterestedUsersReply {
    fn summary(&self) -> ReplySummary<'_> {
        ReplySummary::of(ReplyKind::Value, None)
    }
}
