//! What one module answers to one callback, in Synapse's vocabulary.
//!
//! These are *raw* answers: the coordinator maps them per callback (spec §3.1 and §3.2), so a
//! module written in another language can answer exactly what its Python counterpart would.

use crate::shapes::{
    JsonObject, MediaUploadLimit, RatelimitOverride, RegistrationBehaviour, UserPresenceState,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The `NOT_SPAM` sentinel, spelled as Synapse spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NotSpam {
    /// `"NOT_SPAM"`.
    #[serde(rename = "NOT_SPAM")]
    NotSpam,
}

/// A spam-checker answer: `NOT_SPAM`, a legacy bool, an errcode (with optional extra fields),
/// a deprecated free-text message, or anything else (which the callback's rules map).
///
/// Wire forms: `"NOT_SPAM"`, `true`/`false`, `{"errcode": "M_FORBIDDEN"}` (a `Codes` value),
/// `{"errcode": "M_FORBIDDEN", "fields": {...}}` (the `(Codes, dict)` tuple),
/// `{"message": "..."}` (a plain string), any other JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SpamAnswer {
    /// Allow.
    NotSpam(NotSpam),
    /// Legacy boolean; its meaning depends on the callback (spec §3.1).
    Bool(bool),
    /// An errcode, with the extra fields of the tuple form.
    Code(SpamCode),
    /// The deprecated plain-string form of `check_event_for_spam`.
    Message(SpamMessage),
    /// Anything else: an invalid value (`None`, a number, ...).
    Other(Value),
}

impl SpamAnswer {
    /// Allow.
    pub const NOT_SPAM: SpamAnswer = SpamAnswer::NotSpam(NotSpam::NotSpam);

    /// Deny with `errcode` (a `Codes` value).
    pub fn code(errcode: impl Into<String>) -> Self {
        SpamAnswer::Code(SpamCode {
            errcode: errcode.into(),
            fields: None,
        })
    }

    /// Deny with `errcode` and extra fields (the `(Codes, dict)` form).
    pub fn code_with_fields(errcode: impl Into<String>, fields: JsonObject) -> Self {
        SpamAnswer::Code(SpamCode {
            errcode: errcode.into(),
            fields: Some(fields),
        })
    }
}

/// An errcode answer; `fields` is present only in the tuple form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpamCode {
    /// A Matrix errcode such as `M_FORBIDDEN`.
    pub errcode: String,
    /// Extra fields merged into the client's error body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<JsonObject>,
}

/// The deprecated free-text answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpamMessage {
    /// Becomes the error message of an `M_FORBIDDEN`.
    pub message: String,
}

/// A loosely typed answer read by truthiness (`should_drop_federated_event`,
/// `check_username_for_spam`): `false`, `null`, `""`, `0`, `[]`, `{}` are falsy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct TruthyAnswer(pub Value);

impl TruthyAnswer {
    /// Python's truthiness of the value.
    pub fn is_truthy(&self) -> bool {
        truthy(&self.0)
    }
}

impl From<bool> for TruthyAnswer {
    fn from(b: bool) -> Self {
        TruthyAnswer(Value::Bool(b))
    }
}

/// Python's truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A third-party-rules yes/no answer where only `false` denies (`is False` in Synapse):
/// `null` and any non-boolean value count as allow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CheckAnswer {
    /// `true` allows, `false` denies.
    Bool(bool),
    /// Anything else allows.
    Other(Value),
}

impl CheckAnswer {
    /// Only `false` denies.
    pub fn is_false(&self) -> bool {
        matches!(self, CheckAnswer::Bool(false))
    }
}

impl From<bool> for CheckAnswer {
    fn from(b: bool) -> Self {
        CheckAnswer::Bool(b)
    }
}

/// `check_event_allowed`'s `(bool, dict | None)`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CheckEventAllowedAnswer {
    /// Only `false` denies; `null` or absent continues to the next module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    /// A replacement event (its PDU dict): allows, and later modules are not consulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<JsonObject>,
}

impl CheckEventAllowedAnswer {
    /// `(True, None)`: continue.
    pub fn allow() -> Self {
        CheckEventAllowedAnswer {
            allowed: Some(true),
            replacement: None,
        }
    }
    /// `(False, None)`: deny.
    pub fn deny() -> Self {
        CheckEventAllowedAnswer {
            allowed: Some(false),
            replacement: None,
        }
    }
    /// `(True, dict)`: allow with this replacement event.
    pub fn replace(event: JsonObject) -> Self {
        CheckEventAllowedAnswer {
            allowed: Some(true),
            replacement: Some(event),
        }
    }
}

/// `on_create_room`'s answer: carry on (optionally with edited request content), or refuse.
///
/// Wire forms: `{"request_content": {...}}`, `{}` or `null` to continue, `{"deny": {...}}`
/// to refuse (Synapse's module raising a `SynapseError`), or a bare boolean, which is ignored
/// as Synapse ignores the return value of modules registered with
/// `register_third_party_rules_callbacks` (a legacy `third_party_event_rules:` module's `False`
/// is turned into a refusal by its adapter, which sends `deny`). Anything else (a malformed
/// `deny` included) is not an answer, so the module's failure policy decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OnCreateRoomAnswer {
    /// Refuse room creation with this error (a `SynapseError` in Synapse).
    Deny {
        /// The error to send as is.
        deny: SynapseError,
    },
    /// Carry on; `request_content`, when present, replaces the request for later modules.
    Continue(RoomContent),
    /// A return value Synapse ignores: carry on unchanged.
    Bool(bool),
    /// Python's `None`: carry on unchanged.
    Unchanged,
}

/// `on_create_room`'s "carry on", with the edited request body if the module edited it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomContent {
    /// The edited request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_content: Option<JsonObject>,
}

/// An error a module raises to be sent to the client as is (Synapse's `SynapseError`): any
/// status from 400 to 599, its errcode, its message and its extra fields
/// (`additional_fields`, e.g. `retry_after_ms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SynapseError {
    /// HTTP status, 400 to 599.
    #[serde(
        default = "default_forbidden_status",
        deserialize_with = "error_status"
    )]
    #[schemars(range(min = 400, max = 599))]
    pub status: u16,
    /// Matrix errcode.
    #[serde(default = "default_unknown_errcode")]
    pub errcode: String,
    /// Human-readable message.
    pub error: String,
    /// Extra fields merged into the client's error body.
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub fields: JsonObject,
}

impl SynapseError {
    /// An error with this status, errcode and message, and no extra fields.
    pub fn new(status: u16, errcode: impl Into<String>, error: impl Into<String>) -> Self {
        SynapseError {
            status,
            errcode: errcode.into(),
            error: error.into(),
            fields: JsonObject::new(),
        }
    }

    /// Adds extra fields to the client's error body.
    pub fn with_fields(mut self, fields: JsonObject) -> Self {
        self.fields = fields;
        self
    }

    /// Why the error cannot be sent to a client as is, if it cannot: its status must be an
    /// HTTP error status (a "refusal" answered 200 or 302 would look like success).
    pub fn invalid(&self) -> Option<String> {
        (!valid_error_status(self.status)).then(|| {
            format!(
                "a SynapseError's status must be 400 to 599, not {}",
                self.status
            )
        })
    }
}

/// Whether `status` is an HTTP error status a module's `SynapseError` may carry.
pub fn valid_error_status(status: u16) -> bool {
    (400..=599).contains(&status)
}

fn error_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let status = u16::deserialize(d)?;
    if valid_error_status(status) {
        Ok(status)
    } else {
        Err(serde::de::Error::custom(format!(
            "a SynapseError's status must be 400 to 599, not {status}"
        )))
    }
}

fn default_forbidden_status() -> u16 {
    403
}
fn default_unknown_errcode() -> String {
    crate::errcodes::M_UNKNOWN.to_owned()
}

/// A notification's return value, which Synapse ignores.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Ignored(pub Value);

/// `is_user_expired`: `true`, `false`, or `null` for "no opinion" (Synapse's own return
/// values); or, from a module that knows how long its answer holds (an expiry date fixed in
/// advance), `{"expired": ..., "valid_until_ms": ...}`, which lets the bridge reuse the answer
/// for that user until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ExpiryAnswer {
    /// The answer with how long it holds.
    Lasting(LastingExpiry),
    /// Synapse's `bool | None`: holds for this request only.
    Plain(Option<bool>),
}

/// An `is_user_expired` answer that holds until a known time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LastingExpiry {
    /// `true`, `false`, or `null` for "no opinion".
    pub expired: Option<bool>,
    /// Until when (milliseconds since the Unix epoch) the answer holds for this user.
    pub valid_until_ms: u64,
}

impl ExpiryAnswer {
    /// The answer: expired, not, or no opinion.
    pub fn expired(&self) -> Option<bool> {
        match self {
            ExpiryAnswer::Lasting(l) => l.expired,
            ExpiryAnswer::Plain(p) => *p,
        }
    }

    /// Until when it holds (milliseconds since the epoch), if the module said.
    pub fn valid_until_ms(&self) -> Option<u64> {
        match self {
            ExpiryAnswer::Lasting(l) => Some(l.valid_until_ms),
            ExpiryAnswer::Plain(_) => None,
        }
    }

    /// `expired`, holding until `valid_until_ms`.
    pub fn until(expired: Option<bool>, valid_until_ms: u64) -> ExpiryAnswer {
        ExpiryAnswer::Lasting(LastingExpiry {
            expired,
            valid_until_ms,
        })
    }
}

impl From<Option<bool>> for ExpiryAnswer {
    fn from(answer: Option<bool>) -> ExpiryAnswer {
        ExpiryAnswer::Plain(answer)
    }
}

/// `get_users_for_states`: extra users to notify, each with the states they should receive.
pub type UsersForStatesAnswer = BTreeMap<String, Vec<UserPresenceState>>;

/// `get_interested_users`: a set of user ids, or `"ALL"` (`PRESENCE_ALL_USERS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum InterestedUsers {
    /// Every presence update known to the server.
    All(AllUsers),
    /// These users (a set: duplicates mean nothing).
    Users(Vec<String>),
}

/// The `"ALL"` sentinel (`PRESENCE_ALL_USERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AllUsers {
    /// `"ALL"`.
    #[serde(rename = "ALL")]
    All,
}

/// A password-auth answer: the user id that authenticated, or `null` for "not me".
pub type AuthAnswer = Option<AuthSuccess>;

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthSuccess {
    /// The canonical user id.
    pub user_id: String,
    /// The handle of the post-login callback the checker returned with the user id (the
    /// tuple's second item), which the module keeps until the login result comes back in a
    /// `post_login` call, or until the handle expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_login: Option<String>,
}

/// `get_username_for_registration` / `get_displayname_for_registration`: the first string
/// wins; `null` means no opinion and other values are ignored with a warning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NameAnswer {
    /// A name, or `null`.
    Name(Option<String>),
    /// A value of the wrong type: logged and ignored.
    Other(Value),
}

/// `check_registration_for_spam`'s answer.
pub type RegistrationAnswer = RegistrationBehaviour;

/// `on_legacy_renew`'s `(valid, stale, expiry_ts)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LegacyRenewAnswer {
    /// Whether the token was valid.
    pub valid: bool,
    /// Whether the token had already been used.
    pub stale: bool,
    /// The new expiry, in milliseconds since the epoch.
    pub expiry_ts: i64,
}

/// `on_legacy_admin_request`: the new expiry, in milliseconds since the epoch.
pub type LegacyAdminAnswer = i64;

/// `get_media_config_for_user`: the whole `/media/config` body for this user; `null` or `{}`
/// means no opinion (Synapse reads it by truthiness).
pub type MediaConfigAnswer = Option<JsonObject>;

/// `get_media_upload_limits_for_user`: the user's limits, replacing the configured ones (`[]`
/// means none at all); `null` means no opinion.
pub type UploadLimitsAnswer = Option<Vec<MediaUploadLimit>>;

/// `get_ratelimit_override_for_user`: the override, or `null` for no opinion.
pub type RatelimitAnswer = Option<RatelimitOverride>;

/// `add_field_to_unsigned`: fields to add to the event's `unsigned` (Synapse's own keys win).
pub type UnsignedAnswer = JsonObject;

/// `on_update`: the target duration of the coming batch, in milliseconds.
pub type UpdateDurationAnswer = u64;

/// `default_batch_size` / `min_batch_size`: a number of rows.
pub type BatchSizeAnswer = u64;
