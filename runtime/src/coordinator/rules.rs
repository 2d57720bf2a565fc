//! Each callback's rules from the spec: how its modules combine (§1.5, §3.11), how a raw
//! answer maps to allow or deny (§3.1, §3.2), and what the client is told on a deny.

use glia_bus_schema::errcodes::{M_FORBIDDEN, M_THREEPID_DENIED, M_UNKNOWN};
use glia_bus_schema::{Callback, JsonObject, SpamAnswer, SpamCode};
use serde_json::Value;

/// How a callback's module answers combine (spec §1.5 and §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reducer {
    /// The first deny in order wins; later modules do not count.
    FirstDeny,
    /// The first meaningful answer in order wins.
    FirstNonNone,
    /// Every module is told; answers are ignored.
    RunAll,
    /// Every answer is merged; one value can short-circuit.
    Union,
    /// Only one module may register it.
    SingleSlot,
    /// Modules run one after another, each seeing the previous one's edits.
    Chain,
}

impl Reducer {
    /// The reducer's name, for listings.
    pub fn name(self) -> &'static str {
        match self {
            Reducer::FirstDeny => "first_deny",
            Reducer::FirstNonNone => "first_non_none",
            Reducer::RunAll => "run_all",
            Reducer::Union => "union",
            Reducer::SingleSlot => "single_slot",
            Reducer::Chain => "chain",
        }
    }
}

/// The reducer of `callback` (spec §3.11).
pub fn reducer(callback: Callback) -> Reducer {
    use Callback::*;
    match callback {
        OnCreateRoom => Reducer::Chain,
        OnNewEvent
        | OnProfileUpdate
        | OnUserDeactivationStatusChanged
        | OnThreepidBind
        | OnAddUserThirdPartyIdentifier
        | OnRemoveUserThirdPartyIdentifier
        | OnUserRegistration
        | OnUserLogin
        | OnLoggedOut => Reducer::RunAll,
        IsUserExpired
        | CheckAuth
        | Check3pidAuth
        | GetUsernameForRegistration
        | GetDisplaynameForRegistration => Reducer::FirstNonNone,
        GetUsersForStates | GetInterestedUsers => Reducer::Union,
        OnLegacySendMail | OnLegacyRenew | OnLegacyAdminRequest => Reducer::SingleSlot,
        _ => Reducer::FirstDeny,
    }
}

/// Whether a `SynapseError` a module raises reaches the client as is. Synapse lets it
/// propagate from the spam checkers, `check_event_allowed` and account validity, but turns
/// every exception from the registration-name callbacks and `is_3pid_allowed` into a plain
/// 500 (spec §1.6).
pub fn synapse_error_passes(callback: Callback) -> bool {
    !matches!(
        callback,
        Callback::GetUsernameForRegistration
            | Callback::GetDisplaynameForRegistration
            | Callback::Is3pidAllowed
    )
}

/// The errcode and message Synapse's client sees when `callback` denies without saying more.
pub fn deny_default(callback: Callback) -> (&'static str, &'static str) {
    use Callback::*;
    match callback {
        CheckEventForSpam => (
            M_FORBIDDEN,
            "This message has been rejected as probable spam",
        ),
        ShouldDropFederatedEvent => (M_FORBIDDEN, "The event was dropped by the server's policy"),
        UserMayJoinRoom => (M_FORBIDDEN, "Not allowed to join this room"),
        UserMayInvite => (M_FORBIDDEN, "Invites have been disabled on this server"),
        FederatedUserMayInvite => (
            M_FORBIDDEN,
            "This user is not permitted to send invites to this server/user",
        ),
        UserMaySend3pidInvite => (M_FORBIDDEN, "Cannot send threepid invite"),
        UserMayCreateRoom => (M_FORBIDDEN, "You are not permitted to create rooms"),
        UserMayCreateRoomAlias => (
            M_FORBIDDEN,
            "This user is not permitted to create this alias",
        ),
        UserMayPublishRoom => (
            M_FORBIDDEN,
            "This user is not permitted to publish rooms to the room list",
        ),
        UserMaySendStateEvent => (M_FORBIDDEN, "You are not permitted to send the state event"),
        CheckUsernameForSpam => (M_FORBIDDEN, "The user is hidden from the user directory"),
        CheckRegistrationForSpam => (M_UNKNOWN, "Rate limited"),
        CheckMediaFileForSpam => (M_FORBIDDEN, "Bad content"),
        CheckLoginForSpam => (M_FORBIDDEN, "Login was blocked by the server"),
        CheckEventAllowed => (M_FORBIDDEN, "This event is not allowed in this context"),
        OnCreateRoom => (M_UNKNOWN, "Room creation forbidden with these parameters"),
        CheckThreepidCanBeInvited => (
            M_FORBIDDEN,
            "This third-party identifier can not be invited in this room",
        ),
        CheckVisibilityCanBeModified => (M_UNKNOWN, "Room visibility value not allowed."),
        CheckCanShutdownRoom => (M_FORBIDDEN, "Shutdown of this room is forbidden"),
        CheckCanDeactivateUser => (M_FORBIDDEN, "Deactivation of this user is forbidden"),
        Is3pidAllowed => (
            M_THREEPID_DENIED,
            "Third-party identifier is not allowed on this server",
        ),
        _ => (M_FORBIDDEN, "Forbidden"),
    }
}

/// A deny: errcode, message, extra fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Deny {
    /// The errcode.
    pub errcode: String,
    /// The message.
    pub message: String,
    /// Extra fields for the client's error body.
    pub fields: JsonObject,
}

impl Deny {
    /// The callback's default deny.
    pub fn default_for(callback: Callback) -> Deny {
        let (errcode, message) = deny_default(callback);
        Deny {
            errcode: errcode.to_owned(),
            message: message.to_owned(),
            fields: JsonObject::new(),
        }
    }

    fn with_code(callback: Callback, code: &SpamCode, keep_fields: bool) -> Deny {
        Deny {
            errcode: code.errcode.clone(),
            message: deny_default(callback).1.to_owned(),
            fields: if keep_fields {
                code.fields.clone().unwrap_or_default()
            } else {
                JsonObject::new()
            },
        }
    }
}

/// Maps a spam-checker answer to allow (`None`) or a deny, with the current rules of spec
/// §3.1. `NOT_SPAM` is compared by equality (the spec's advice for a port).
pub fn spam_verdict(callback: Callback, answer: &SpamAnswer) -> Option<Deny> {
    use Callback::*;
    let invalid = |what: &str| {
        tracing::warn!(%callback, answer = %what, "module returned an invalid value; denying as Synapse does");
        Some(Deny::default_for(callback))
    };
    match (callback, answer) {
        (_, SpamAnswer::NotSpam(_)) => None,
        (CheckEventForSpam, SpamAnswer::Bool(false))
        | (CheckMediaFileForSpam, SpamAnswer::Bool(false)) => None,
        (CheckEventForSpam, SpamAnswer::Bool(true))
        | (CheckMediaFileForSpam, SpamAnswer::Bool(true)) => Some(Deny::default_for(callback)),
        (CheckEventForSpam, SpamAnswer::Code(code)) => Some(Deny::with_code(callback, code, true)),
        (CheckEventForSpam, SpamAnswer::Message(m)) => Some(Deny {
            errcode: M_FORBIDDEN.to_owned(),
            message: m.message.clone(),
            fields: JsonObject::new(),
        }),
        // A bare string is the deprecated message form: M_FORBIDDEN with that message.
        (CheckEventForSpam, SpamAnswer::Other(Value::String(s))) => Some(Deny {
            errcode: M_FORBIDDEN.to_owned(),
            message: s.clone(),
            fields: JsonObject::new(),
        }),
        (CheckEventForSpam, SpamAnswer::Other(v)) => invalid(&v.to_string()),
        // The media caller ignores the extra fields.
        (CheckMediaFileForSpam, SpamAnswer::Code(code)) => {
            Some(Deny::with_code(callback, code, false))
        }
        // user_may_send_state_event: only a bare errcode counts; a tuple denies as M_FORBIDDEN.
        (UserMaySendStateEvent, SpamAnswer::Code(code)) if code.fields.is_none() => {
            Some(Deny::with_code(callback, code, false))
        }
        (UserMaySendStateEvent, other) => invalid(&format!("{other:?}")),
        (CheckLoginForSpam, SpamAnswer::Code(code)) => Some(Deny::with_code(callback, code, true)),
        (CheckLoginForSpam, other) => invalid(&format!("{other:?}")),
        // user_may_*: true allows, false denies, an errcode denies with it; anything else
        // (None included) denies.
        (_, SpamAnswer::Bool(true)) => None,
        (_, SpamAnswer::Bool(false)) => Some(Deny::default_for(callback)),
        (_, SpamAnswer::Code(code)) => Some(Deny::with_code(callback, code, true)),
        (_, other) => invalid(&format!("{other:?}")),
    }
}
