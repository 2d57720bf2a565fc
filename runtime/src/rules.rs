//! Every callback's rules in one table, read beside spec §3.11: how its modules' answers
//! combine, how one raw answer is read, what a module's failure means by default, whether a
//! module's `SynapseError` reaches the client, what the client is told on a deny, and how many
//! modules may register it. Adding a callback is a line in the bus schema's table and a row
//! here; the dispatcher reads the row.

use crate::policy::{Builtin, FailurePolicy};
use glia_bus_schema::errcodes::{M_FORBIDDEN, M_THREEPID_DENIED, M_TOO_LARGE, M_UNKNOWN};
use glia_bus_schema::Callback;

/// How a callback's module answers combine (spec §1.5 and §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reducer {
    /// The first deny in order wins; later modules do not count.
    FirstDeny,
    /// The first meaningful answer in order wins.
    FirstNonNone,
    /// Every module is told; answers are ignored.
    RunAll,
    /// Every answer is merged into one set; one value can short-circuit.
    Union,
    /// Every answer is merged into one object; a later module's key replaces an earlier one's.
    Merge,
    /// One module holds the callback; its answer is the result.
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
            Reducer::Merge => "merge",
            Reducer::SingleSlot => "single_slot",
            Reducer::Chain => "chain",
        }
    }
}

/// How one module's raw answer is read (spec §3.1's normalisation table and §3.2–§3.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// `check_event_for_spam`: `NOT_SPAM`/`false` allow; `true` denies; an errcode denies
    /// with it (and its fields); any other string is the client's message; anything else
    /// denies as "probable spam".
    EventSpam,
    /// `user_may_*`: `NOT_SPAM`/`true` allow; `false` or an errcode (with fields) denies;
    /// anything else, `None` included, denies.
    UserMay,
    /// `check_media_file_for_spam`: `NOT_SPAM`/`false` allow; `true` or an errcode denies
    /// (the caller ignores extra fields).
    MediaSpam,
    /// `user_may_send_state_event`: only `NOT_SPAM` allows; only a bare errcode keeps its
    /// code; everything else denies with `M_FORBIDDEN`.
    StateEventSpam,
    /// `check_login_for_spam`: only `NOT_SPAM` allows; an errcode (with fields) denies with it;
    /// everything else denies.
    LoginSpam,
    /// A truthy answer denies (drop the event, hide the user).
    TruthyDenies,
    /// A falsy answer denies, `None` included.
    FalsyDenies,
    /// Only `false` denies (`is False`); anything else allows.
    FalseDenies,
    /// `check_registration_for_spam`: the first behaviour other than `allow` wins.
    Behaviour,
    /// `check_event_allowed`: `false` denies, a replacement event allows and stops, anything
    /// else carries on.
    EventAllowed,
    /// `on_create_room`: each module may edit the request; raising refuses.
    RoomEdits,
    /// The return value is ignored.
    Ignored,
    /// The first answer that is not `None`.
    NotNone,
    /// The first truthy answer (`{}` counts as none).
    Truthy,
    /// The first string; other values are logged and ignored.
    Text,
    /// Presence targets, merged per user.
    Users,
    /// Interested users, merged; `"ALL"` stops the walk.
    UsersOrAll,
    /// Objects merged key by key.
    Fields,
    /// The one module's value.
    Value,
}

/// What a module's `SynapseError` becomes when its failure fails the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynapseErrors {
    /// It reaches the client as is (status, errcode, message, fields).
    PassThrough,
    /// Synapse catches every exception and answers 500 "Internal Server Error".
    Internal,
}

/// How many modules may register a callback (spec §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Any number, called in order.
    Many,
    /// One; a second registration is refused at start-up.
    OneRefusingOthers,
    /// The first registration is kept; later ones are ignored with a warning.
    FirstKept,
}

/// One callback's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The callback.
    pub callback: Callback,
    /// How its answers combine.
    pub reducer: Reducer,
    /// How one answer is read.
    pub reading: Reading,
    /// What a module's failure means unless the config says otherwise (Synapse's behaviour,
    /// spec §1.6).
    pub on_failure: FailurePolicy,
    /// What a module's `SynapseError` becomes when its failure fails the request.
    pub synapse_errors: SynapseErrors,
    /// The errcode and message of a deny that carries none of its own; `None` where the
    /// callback cannot deny.
    pub deny: Option<(&'static str, &'static str)>,
    /// How many modules may register it.
    pub registration: Registration,
}

use FailurePolicy::{Allow as LogAndGoOn, Deny as Refuse, Error as Propagate};
use Reading::*;
use Reducer::*;
use Registration::*;
use SynapseErrors::*;

const fn row(
    callback: Callback,
    reducer: Reducer,
    reading: Reading,
    on_failure: FailurePolicy,
    synapse_errors: SynapseErrors,
    deny: Option<(&'static str, &'static str)>,
) -> Rules {
    Rules {
        callback,
        reducer,
        reading,
        on_failure,
        synapse_errors,
        deny,
        registration: Many,
    }
}

const fn one(rules: Rules, registration: Registration) -> Rules {
    Rules {
        registration,
        ..rules
    }
}

const fn denies(
    errcode: &'static str,
    message: &'static str,
) -> Option<(&'static str, &'static str)> {
    Some((errcode, message))
}

use Callback as C;

/// The table, in the order of `Callback::ALL` (a test checks it).
#[rustfmt::skip]
pub const RULES: &[Rules] = &[
    //  callback                              reducer       reading          on failure   SynapseError  deny the client sees
    // Spam checker (spec §3.1).
    row(C::CheckEventForSpam,                 FirstDeny,    EventSpam,       Propagate,   PassThrough,  denies(M_FORBIDDEN, "This message has been rejected as probable spam")),
    row(C::ShouldDropFederatedEvent,          FirstDeny,    TruthyDenies,    Propagate,   PassThrough,  denies(M_FORBIDDEN, "The event was dropped by the server's policy")),
    row(C::UserMayJoinRoom,                   FirstDeny,    UserMay,         Propagate,   PassThrough,  denies(M_FORBIDDEN, "Not allowed to join this room")),
    row(C::UserMayInvite,                     FirstDeny,    UserMay,         Propagate,   PassThrough,  denies(M_FORBIDDEN, "Invites have been disabled on this server")),
    row(C::FederatedUserMayInvite,            FirstDeny,    UserMay,         Propagate,   PassThrough,  denies(M_FORBIDDEN, "This user is not permitted to send invites to this server/user")),
    row(C::UserMaySend3pidInvite,             FirstDeny,    UserMay,         Propagate,   PassThrough,  denies(M_FORBIDDEN, "Cannot send threepid invite")),
    row(C::UserMayCreateRoom,                 FirstDeny,    UserMay,         Propagate,   PassThrough,  denies(M_FORBIDDEN, "You are not permitted to create rooms")),
    row(C::UserMayCreateRoomAlias,            FirstDeny,    UserMay,         Propagate,   PassThrough,  denies(M_FORBIDDEN, "This user is not permitted to create this alias")),
    row(C::UserMayPublishRoom,                FirstDeny,    UserMay,         Propagate,   PassThrough,  denies(M_FORBIDDEN, "This user is not permitted to publish rooms to the room list")),
    row(C::UserMaySendStateEvent,             FirstDeny,    StateEventSpam,  Propagate,   PassThrough,  denies(M_FORBIDDEN, "You are not permitted to send the state event")),
    row(C::CheckUsernameForSpam,              FirstDeny,    TruthyDenies,    Propagate,   PassThrough,  denies(M_FORBIDDEN, "The user is hidden from the user directory")),
    row(C::CheckRegistrationForSpam,          FirstDeny,    Behaviour,       Propagate,   PassThrough,  denies(M_UNKNOWN, "Rate limited")),
    row(C::CheckMediaFileForSpam,             FirstDeny,    MediaSpam,       Propagate,   PassThrough,  denies(M_FORBIDDEN, "Bad content")),
    row(C::CheckLoginForSpam,                 FirstDeny,    LoginSpam,       Propagate,   PassThrough,  denies(M_FORBIDDEN, "Login was blocked by the server")),
    // Third-party event rules (spec §3.2).
    row(C::CheckEventAllowed,                 FirstDeny,    EventAllowed,    Propagate,   PassThrough,  denies(M_FORBIDDEN, "This event is not allowed in this context")),
    row(C::OnCreateRoom,                      Chain,        RoomEdits,       Refuse,      PassThrough,  denies(M_UNKNOWN, "Room creation forbidden with these parameters")),
    row(C::CheckThreepidCanBeInvited,         FirstDeny,    FalseDenies,     LogAndGoOn,  PassThrough,  denies(M_FORBIDDEN, "This third-party identifier can not be invited in this room")),
    row(C::CheckVisibilityCanBeModified,      FirstDeny,    FalseDenies,     LogAndGoOn,  PassThrough,  denies(M_UNKNOWN, "Room visibility value not allowed.")),
    row(C::OnNewEvent,                        RunAll,       Ignored,         LogAndGoOn,  PassThrough,  None),
    row(C::CheckCanShutdownRoom,              FirstDeny,    FalseDenies,     LogAndGoOn,  PassThrough,  denies(M_FORBIDDEN, "Shutdown of this room is forbidden")),
    row(C::CheckCanDeactivateUser,            FirstDeny,    FalseDenies,     LogAndGoOn,  PassThrough,  denies(M_FORBIDDEN, "Deactivation of this user is forbidden")),
    row(C::OnProfileUpdate,                   RunAll,       Ignored,         LogAndGoOn,  PassThrough,  None),
    row(C::OnUserDeactivationStatusChanged,   RunAll,       Ignored,         LogAndGoOn,  PassThrough,  None),
    row(C::OnThreepidBind,                    RunAll,       Ignored,         LogAndGoOn,  PassThrough,  None),
    row(C::OnAddUserThirdPartyIdentifier,     RunAll,       Ignored,         LogAndGoOn,  PassThrough,  None),
    row(C::OnRemoveUserThirdPartyIdentifier,  RunAll,       Ignored,         LogAndGoOn,  PassThrough,  None),
    // Account validity (spec §3.3).
    row(C::IsUserExpired,                     FirstNonNone, NotNone,         Propagate,   PassThrough,  None),
    row(C::OnUserRegistration,                RunAll,       Ignored,         Propagate,   PassThrough,  None),
    row(C::OnUserLogin,                       RunAll,       Ignored,         Propagate,   PassThrough,  None),
    one(row(C::OnLegacySendMail,              SingleSlot,   Ignored,         Propagate,   PassThrough,  None), OneRefusingOthers),
    one(row(C::OnLegacyRenew,                 SingleSlot,   Value,           Propagate,   PassThrough,  None), OneRefusingOthers),
    one(row(C::OnLegacyAdminRequest,          SingleSlot,   Value,           Propagate,   PassThrough,  None), OneRefusingOthers),
    // Presence router (spec §3.4).
    row(C::GetUsersForStates,                 Union,        Users,           LogAndGoOn,  PassThrough,  None),
    row(C::GetInterestedUsers,                Union,        UsersOrAll,      LogAndGoOn,  PassThrough,  None),
    // Password auth providers (spec §3.5).
    row(C::CheckAuth,                         FirstNonNone, NotNone,         LogAndGoOn,  PassThrough,  None),
    row(C::Check3pidAuth,                     FirstNonNone, NotNone,         LogAndGoOn,  PassThrough,  None),
    // glia's own: an auth checker's post-login callback, awaited as Synapse awaits it (a raise fails the login).
    row(C::PostLogin,                         RunAll,       Ignored,         Propagate,   PassThrough,  None),
    row(C::OnLoggedOut,                       RunAll,       Ignored,         LogAndGoOn,  PassThrough,  None),
    row(C::GetUsernameForRegistration,        FirstNonNone, Text,            Propagate,   Internal,     None),
    row(C::GetDisplaynameForRegistration,     FirstNonNone, Text,            Propagate,   Internal,     None),
    row(C::Is3pidAllowed,                     FirstDeny,    FalseDenies,     Propagate,   Internal,     denies(M_THREEPID_DENIED, "Third-party identifier is not allowed on this server")),
    // Account data (spec §3.6).
    row(C::OnAccountDataUpdated,              RunAll,       Ignored,         LogAndGoOn,  PassThrough,  None),
    // Media repository (spec §3.7).
    row(C::GetMediaConfigForUser,             FirstNonNone, Truthy,          Propagate,   PassThrough,  None),
    row(C::IsUserAllowedToUploadMediaOfSize,  FirstDeny,    FalsyDenies,     Propagate,   PassThrough,  denies(M_TOO_LARGE, "Upload request body is too large")),
    row(C::GetMediaUploadLimitsForUser,       FirstNonNone, NotNone,         Propagate,   PassThrough,  None),
    row(C::OnMediaUploadLimitExceeded,        RunAll,       Ignored,         Propagate,   PassThrough,  None),
    // Ratelimit (spec §3.8).
    row(C::GetRatelimitOverrideForUser,       FirstNonNone, Truthy,          Propagate,   PassThrough,  None),
    // Extra unsigned fields (spec §3.9).
    row(C::AddFieldToUnsigned,                Merge,        Fields,          Propagate,   PassThrough,  None),
    // Background-update controller (spec §3.10).
    one(row(C::OnUpdate,                      SingleSlot,   Value,           Propagate,   PassThrough,  None), FirstKept),
    one(row(C::DefaultBatchSize,              SingleSlot,   Value,           Propagate,   PassThrough,  None), FirstKept),
    one(row(C::MinBatchSize,                  SingleSlot,   Value,           Propagate,   PassThrough,  None), FirstKept),
    // Federation (Synapse 1.158): a raising callback is logged, the others still run.
    row(C::OnEventDeliveredOverFederation,    RunAll,       Ignored,         LogAndGoOn,  PassThrough,  None),
];

/// The row of `callback`.
pub fn rules(callback: Callback) -> &'static Rules {
    &RULES[callback.index()]
}

/// The reducer of `callback` (spec §3.11).
pub fn reducer(callback: Callback) -> Reducer {
    rules(callback).reducer
}

/// A deny: errcode, message, extra fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Deny {
    /// The errcode.
    pub errcode: String,
    /// The message.
    pub message: String,
    /// Extra fields for the client's error body.
    pub fields: glia_bus_schema::JsonObject,
    /// The message is the module's own (the deprecated plain-string spam answer).
    pub module_message: bool,
}

impl Deny {
    /// The callback's deny without anything of the module's.
    pub fn default_for(callback: Callback) -> Deny {
        let (errcode, message) = rules(callback).deny.unwrap_or((M_FORBIDDEN, "Forbidden"));
        Deny {
            errcode: errcode.to_owned(),
            message: message.to_owned(),
            fields: glia_bus_schema::JsonObject::new(),
            module_message: false,
        }
    }

    /// The callback's deny with the module's errcode (and extra fields, where the caller
    /// keeps them). Synapse writes the extra fields over its own `error` and `errcode`
    /// (`cs_error`), so a field `error` (a moderation tool's message, say) is what the client
    /// reads: the deny's message is that, and the decision log records it.
    pub fn with_code(
        callback: Callback,
        errcode: &str,
        fields: Option<&glia_bus_schema::JsonObject>,
    ) -> Deny {
        let fields = fields.cloned().unwrap_or_default();
        let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let default = Deny::default_for(callback);
        Deny {
            errcode: text("errcode").unwrap_or_else(|| errcode.to_owned()),
            message: text("error").unwrap_or(default.message),
            fields,
            module_message: false,
        }
    }

    /// `M_FORBIDDEN` with the module's own message.
    pub fn with_message(message: &str) -> Deny {
        Deny {
            errcode: M_FORBIDDEN.to_owned(),
            message: message.to_owned(),
            fields: glia_bus_schema::JsonObject::new(),
            module_message: true,
        }
    }
}

impl Builtin for FailurePolicy {
    /// Synapse's behaviour when a callback raises (spec §1.6), from the table.
    fn builtin(callback: Callback) -> Self {
        rules(callback).on_failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client reads of a deny with extra fields, as Synapse's `cs_error` writes it:
    /// the fields over the message and errcode.
    #[test]
    fn a_deny_with_an_error_field_carries_the_message_the_client_reads() {
        let mut fields = glia_bus_schema::JsonObject::new();
        fields.insert("error".into(), "Draupnir says no".into());
        let deny = Deny::with_code(Callback::UserMayInvite, "M_FORBIDDEN", Some(&fields));
        assert_eq!(deny.message, "Draupnir says no");
        assert_eq!(deny.errcode, "M_FORBIDDEN");
        let plain = Deny::with_code(Callback::UserMayInvite, "M_LIMIT_EXCEEDED", None);
        assert_eq!(
            plain.message,
            Deny::default_for(Callback::UserMayInvite).message
        );
        assert_eq!(plain.errcode, "M_LIMIT_EXCEEDED");
        fields.insert("errcode".into(), "M_UNKNOWN".into());
        let deny = Deny::with_code(Callback::UserMayInvite, "M_FORBIDDEN", Some(&fields));
        assert_eq!(deny.errcode, "M_UNKNOWN", "cs_error writes the fields last");
    }

    #[test]
    fn the_table_has_one_row_per_callback_in_order() {
        assert_eq!(RULES.len(), Callback::ALL.len());
        for (row, callback) in RULES.iter().zip(Callback::ALL) {
            assert_eq!(row.callback, *callback);
        }
    }

    #[test]
    fn only_deciding_callbacks_have_a_deny_and_only_first_deny_and_chain_deny() {
        for row in RULES {
            let decides = matches!(row.reducer, FirstDeny | Chain);
            assert_eq!(row.deny.is_some(), decides, "{}", row.callback);
        }
    }

    #[test]
    fn single_slots_and_registration_limits_go_together() {
        for row in RULES {
            assert_eq!(
                row.reducer == SingleSlot,
                row.registration != Many,
                "{}",
                row.callback
            );
        }
        assert_eq!(
            glia_module_api::registration::SINGLE_SLOT.to_vec(),
            RULES
                .iter()
                .filter(|r| r.registration == OneRefusingOthers)
                .map(|r| r.callback)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            glia_module_api::registration::BACKGROUND_CONTROLLER.to_vec(),
            RULES
                .iter()
                .filter(|r| r.registration == FirstKept)
                .map(|r| r.callback)
                .collect::<Vec<_>>()
        );
    }
}
