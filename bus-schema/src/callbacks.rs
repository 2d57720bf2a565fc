//! The table of callbacks: each one's name, category, request, module answer and reply.
//!
//! Everything that lists callbacks (the `Callback` enum, the request and answer enums, the
//! reply enum and the JSON Schema) is generated from the single table at the bottom.

use crate::answers::*;
use crate::replies::*;
use crate::requests;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The register method a callback belongs to, as in Synapse's module API.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// `register_spam_checker_callbacks`.
    SpamChecker,
    /// `register_third_party_rules_callbacks`.
    ThirdPartyRules,
    /// `register_account_validity_callbacks`.
    AccountValidity,
    /// `register_presence_router_callbacks`.
    PresenceRouter,
    /// `register_password_auth_provider_callbacks`.
    PasswordAuthProvider,
}

impl Category {
    /// The snake_case name used in config and logs.
    pub fn name(self) -> &'static str {
        match self {
            Category::SpamChecker => "spam_checker",
            Category::ThirdPartyRules => "third_party_rules",
            Category::AccountValidity => "account_validity",
            Category::PresenceRouter => "presence_router",
            Category::PasswordAuthProvider => "password_auth_provider",
        }
    }
}

/// An unknown callback name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown callback {0:?}")]
pub struct UnknownCallback(pub String);

/// Why a callback's arguments could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// The body is not JSON at all.
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but a field is missing or of the wrong type.
    #[error("{}{message}", if path.is_empty() { String::new() } else { format!("field `{path}`: ") })]
    BadField {
        /// The field, as `event.content.body` (empty: the body itself).
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// How deep serde_json nests arrays and objects before it stops (its recursion limit).
pub const MAX_DEPTH: usize = 128;

/// Whether serde_json gave up because the input nests deeper than [`MAX_DEPTH`]. It files
/// that under syntax errors and exposes no code for it, so its message is the only sign;
/// `deep_nesting_is_bad_json_not_not_json` fails if a new serde_json words it otherwise.
fn too_deep(e: &serde_json::Error) -> bool {
    e.is_syntax() && e.to_string().starts_with("recursion limit exceeded")
}

fn decode_args<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ArgsError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if too_deep(&inner) {
            // Valid JSON can nest deeper than the decoder recurses: it is JSON, but not
            // arguments glia takes.
            ArgsError::BadField {
                path: String::new(),
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            }
        } else if inner.is_syntax() || inner.is_eof() {
            ArgsError::NotJson(inner.to_string())
        } else {
            ArgsError::BadField {
                path: if path == "." { String::new() } else { path },
                message: inner.to_string(),
            }
        }
    })?;
    de.end().map_err(|e| ArgsError::NotJson(e.to_string()))?;
    Ok(value)
}

macro_rules! callbacks {
    ($($variant:ident = $name:literal, $cat:ident, $req:ty, $ans:ty, $reply:ty;)*) => {
        /// Every callback glia dispatches.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        pub enum Callback {
            $(
                #[doc = concat!("`", $name, "`")]
                #[serde(rename = $name)]
                $variant,
            )*
        }

        impl Callback {
            /// Every callback, in the order of the spec.
            pub const ALL: &'static [Callback] = &[$(Callback::$variant),*];

            /// Synapse's name for it.
            pub fn name(self) -> &'static str {
                match self { $(Callback::$variant => $name),* }
            }

            /// Its register method.
            pub fn category(self) -> Category {
                match self { $(Callback::$variant => Category::$cat),* }
            }

            /// A dense index, for per-callback tables.
            pub fn index(self) -> usize {
                self as usize
            }
        }

        impl FromStr for Callback {
            type Err = UnknownCallback;
            fn from_str(s: &str) -> Result<Self, UnknownCallback> {
                match s {
                    $($name => Ok(Callback::$variant),)*
                    other => Err(UnknownCallback(other.to_owned())),
                }
            }
        }

        /// A callback's arguments, tagged with its name: `{"callback": ..., "args": {...}}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "callback", content = "args")]
        pub enum CallbackRequest {
            $(
                #[doc = concat!("`", $name, "`")]
                #[serde(rename = $name)]
                $variant($req),
            )*
        }

        impl CallbackRequest {
            /// Which callback this is.
            pub fn callback(&self) -> Callback {
                match self { $(CallbackRequest::$variant(_) => Callback::$variant),* }
            }

            /// Decodes a callback's arguments from JSON.
            pub fn from_args(callback: Callback, args: serde_json::Value) -> Result<Self, serde_json::Error> {
                Ok(match callback {
                    $(Callback::$variant => CallbackRequest::$variant(serde_json::from_value(args)?),)*
                })
            }

            /// Decodes a callback's arguments from JSON bytes, naming the bad field on error.
            pub fn from_args_slice(callback: Callback, args: &[u8]) -> Result<Self, serde_json::Error> {
                Ok(match callback {
                    $(Callback::$variant => CallbackRequest::$variant(serde_json::from_slice(args)?),)*
                })
            }

            /// Decodes a callback's arguments from JSON bytes; the error names the bad field.
            pub fn from_json_slice(callback: Callback, args: &[u8]) -> Result<Self, ArgsError> {
                Ok(match callback {
                    $(Callback::$variant => CallbackRequest::$variant(decode_args(args)?),)*
                })
            }

            /// The arguments alone, as JSON.
            pub fn args_json(&self) -> serde_json::Value {
                match self {
                    $(CallbackRequest::$variant(r) => serde_json::to_value(r),)*
                }.unwrap_or(serde_json::Value::Null)
            }
        }

        /// One module's answer to a callback: `{"callback": ..., "answer": ...}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "callback", content = "answer")]
        pub enum ModuleAnswer {
            $(
                #[doc = concat!("`", $name, "`")]
                #[serde(rename = $name)]
                $variant($ans),
            )*
        }

        impl ModuleAnswer {
            /// Which callback this answers.
            pub fn callback(&self) -> Callback {
                match self { $(ModuleAnswer::$variant(_) => Callback::$variant),* }
            }

            /// Decodes an answer to `callback` from JSON.
            pub fn from_json(callback: Callback, answer: serde_json::Value) -> Result<Self, serde_json::Error> {
                Ok(match callback {
                    $(Callback::$variant => ModuleAnswer::$variant(serde_json::from_value(answer)?),)*
                })
            }
        }

        /// The coordinator's reply to a callback (serialised without a tag: the caller knows
        /// which callback it asked).
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum DispatchReply {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant($reply),
            )*
        }

        impl DispatchReply {
            /// Decodes a reply to `callback` from JSON.
            pub fn from_json(callback: Callback, reply: serde_json::Value) -> Result<Self, serde_json::Error> {
                Ok(match callback {
                    $(Callback::$variant => DispatchReply::$variant(serde_json::from_value(reply)?),)*
                })
            }

            /// Which callback this answers.
            pub fn callback(&self) -> Callback {
                match self { $(DispatchReply::$variant(_) => Callback::$variant),* }
            }

            /// What the reply amounts to, for logs, metrics and traces.
            pub fn summary(&self) -> crate::replies::ReplySummary<'_> {
                match self { $(DispatchReply::$variant(r) => crate::replies::Summarize::summary(r)),* }
            }
        }

        $(
            impl CallbackArgs for $req {
                const CALLBACK: Callback = Callback::$variant;
                type Answer = $ans;
                type Reply = $reply;
                fn from_request(request: &CallbackRequest) -> Option<&Self> {
                    match request { CallbackRequest::$variant(r) => Some(r), _ => None }
                }
                fn into_request(self) -> CallbackRequest {
                    CallbackRequest::$variant(self)
                }
                fn wrap_answer(answer: $ans) -> ModuleAnswer {
                    ModuleAnswer::$variant(answer)
                }
                fn unwrap_answer(answer: ModuleAnswer) -> Result<$ans, ModuleAnswer> {
                    match answer { ModuleAnswer::$variant(a) => Ok(a), other => Err(other) }
                }
                fn wrap_reply(reply: $reply) -> DispatchReply {
                    DispatchReply::$variant(reply)
                }
                fn unwrap_reply(reply: DispatchReply) -> Result<$reply, DispatchReply> {
                    match reply { DispatchReply::$variant(r) => Ok(r), other => Err(other) }
                }
            }
        )*

        /// Adds every callback's request, answer and reply schema to `out`, keyed by name.
        pub(crate) fn callback_schemas(
            generator: &mut schemars::SchemaGenerator,
            out: &mut serde_json::Map<String, serde_json::Value>,
        ) {
            $(
                out.insert($name.to_owned(), serde_json::json!({
                    "category": Category::$cat.name(),
                    "request": generator.subschema_for::<$req>(),
                    "answer": generator.subschema_for::<$ans>(),
                    "reply": generator.subschema_for::<$reply>(),
                }));
            )*
        }
    };
}

/// Ties a callback's request type to its callback, answer and reply types, so typed code can
/// move between the typed structs and the tagged enums without a `match` of its own.
pub trait CallbackArgs: Sized + Send + Sync + 'static {
    /// The callback these are the arguments of.
    const CALLBACK: Callback;
    /// One module's answer.
    type Answer: Send + 'static;
    /// The coordinator's reply.
    type Reply: Send + 'static;
    /// Borrows these arguments out of a tagged request.
    fn from_request(request: &CallbackRequest) -> Option<&Self>;
    /// Tags these arguments.
    fn into_request(self) -> CallbackRequest;
    /// Tags a module's answer.
    fn wrap_answer(answer: Self::Answer) -> ModuleAnswer;
    /// Untags a module's answer, giving it back when it answers another callback.
    fn unwrap_answer(answer: ModuleAnswer) -> Result<Self::Answer, ModuleAnswer>;
    /// Tags a reply.
    fn wrap_reply(reply: Self::Reply) -> DispatchReply;
    /// Untags a reply, giving it back when it answers another callback.
    fn unwrap_reply(reply: DispatchReply) -> Result<Self::Reply, DispatchReply>;
}

impl fmt::Display for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

callbacks! {
    // Spam checker (spec §3.1).
    CheckEventForSpam = "check_event_for_spam", SpamChecker, requests::CheckEventForSpam, SpamAnswer, Decision;
    ShouldDropFederatedEvent = "should_drop_federated_event", SpamChecker, requests::ShouldDropFederatedEvent, TruthyAnswer, Decision;
    UserMayJoinRoom = "user_may_join_room", SpamChecker, requests::UserMayJoinRoom, SpamAnswer, Decision;
    UserMayInvite = "user_may_invite", SpamChecker, requests::UserMayInvite, SpamAnswer, Decision;
    FederatedUserMayInvite = "federated_user_may_invite", SpamChecker, requests::FederatedUserMayInvite, SpamAnswer, Decision;
    UserMaySend3pidInvite = "user_may_send_3pid_invite", SpamChecker, requests::UserMaySend3pidInvite, SpamAnswer, Decision;
    UserMayCreateRoom = "user_may_create_room", SpamChecker, requests::UserMayCreateRoom, SpamAnswer, Decision;
    UserMayCreateRoomAlias = "user_may_create_room_alias", SpamChecker, requests::UserMayCreateRoomAlias, SpamAnswer, Decision;
    UserMayPublishRoom = "user_may_publish_room", SpamChecker, requests::UserMayPublishRoom, SpamAnswer, Decision;
    UserMaySendStateEvent = "user_may_send_state_event", SpamChecker, requests::UserMaySendStateEvent, SpamAnswer, Decision;
    CheckUsernameForSpam = "check_username_for_spam", SpamChecker, requests::CheckUsernameForSpam, TruthyAnswer, Decision;
    CheckRegistrationForSpam = "check_registration_for_spam", SpamChecker, requests::CheckRegistrationForSpam, RegistrationAnswer, Outcome<RegistrationReply>;
    CheckMediaFileForSpam = "check_media_file_for_spam", SpamChecker, requests::CheckMediaFileForSpam, SpamAnswer, Decision;
    CheckLoginForSpam = "check_login_for_spam", SpamChecker, requests::CheckLoginForSpam, SpamAnswer, Decision;
    // Third-party event rules (spec §3.2).
    CheckEventAllowed = "check_event_allowed", ThirdPartyRules, requests::CheckEventAllowed, CheckEventAllowedAnswer, Decision;
    OnCreateRoom = "on_create_room", ThirdPartyRules, requests::OnCreateRoom, OnCreateRoomAnswer, Decision;
    CheckThreepidCanBeInvited = "check_threepid_can_be_invited", ThirdPartyRules, requests::CheckThreepidCanBeInvited, CheckAnswer, Decision;
    CheckVisibilityCanBeModified = "check_visibility_can_be_modified", ThirdPartyRules, requests::CheckVisibilityCanBeModified, CheckAnswer, Decision;
    OnNewEvent = "on_new_event", ThirdPartyRules, requests::OnNewEvent, Ignored, Decision;
    CheckCanShutdownRoom = "check_can_shutdown_room", ThirdPartyRules, requests::CheckCanShutdownRoom, CheckAnswer, Decision;
    CheckCanDeactivateUser = "check_can_deactivate_user", ThirdPartyRules, requests::CheckCanDeactivateUser, CheckAnswer, Decision;
    OnProfileUpdate = "on_profile_update", ThirdPartyRules, requests::OnProfileUpdate, Ignored, Decision;
    OnUserDeactivationStatusChanged = "on_user_deactivation_status_changed", ThirdPartyRules, requests::OnUserDeactivationStatusChanged, Ignored, Decision;
    OnThreepidBind = "on_threepid_bind", ThirdPartyRules, requests::OnThreepidBind, Ignored, Decision;
    OnAddUserThirdPartyIdentifier = "on_add_user_third_party_identifier", ThirdPartyRules, requests::OnAddUserThirdPartyIdentifier, Ignored, Decision;
    OnRemoveUserThirdPartyIdentifier = "on_remove_user_third_party_identifier", ThirdPartyRules, requests::OnRemoveUserThirdPartyIdentifier, Ignored, Decision;
    // Account validity (spec §3.3).
    IsUserExpired = "is_user_expired", AccountValidity, requests::IsUserExpired, ExpiryAnswer, Outcome<ExpiryReply>;
    OnUserRegistration = "on_user_registration", AccountValidity, requests::OnUserRegistration, Ignored, Decision;
    OnUserLogin = "on_user_login", AccountValidity, requests::OnUserLogin, Ignored, Decision;
    OnLegacySendMail = "on_legacy_send_mail", AccountValidity, requests::OnLegacySendMail, Ignored, Decision;
    OnLegacyRenew = "on_legacy_renew", AccountValidity, requests::OnLegacyRenew, LegacyRenewAnswer, Outcome<SlotReply<LegacyRenewAnswer>>;
    OnLegacyAdminRequest = "on_legacy_admin_request", AccountValidity, requests::OnLegacyAdminRequest, LegacyAdminAnswer, Outcome<SlotReply<LegacyAdminAnswer>>;
    // Presence router (spec §3.4).
    GetUsersForStates = "get_users_for_states", PresenceRouter, requests::GetUsersForStates, UsersForStatesAnswer, Outcome<UsersForStatesReply>;
    GetInterestedUsers = "get_interested_users", PresenceRouter, requests::GetInterestedUsers, InterestedUsers, Outcome<InterestedUsersReply>;
    // Password auth providers (spec §3.5).
    CheckAuth = "check_auth", PasswordAuthProvider, requests::CheckAuth, AuthAnswer, Outcome<AuthReply>;
    Check3pidAuth = "check_3pid_auth", PasswordAuthProvider, requests::Check3pidAuth, AuthAnswer, Outcome<AuthReply>;
    OnLoggedOut = "on_logged_out", PasswordAuthProvider, requests::OnLoggedOut, Ignored, Decision;
    GetUsernameForRegistration = "get_username_for_registration", PasswordAuthProvider, requests::GetUsernameForRegistration, NameAnswer, Outcome<NameReply>;
    GetDisplaynameForRegistration = "get_displayname_for_registration", PasswordAuthProvider, requests::GetDisplaynameForRegistration, NameAnswer, Outcome<NameReply>;
    Is3pidAllowed = "is_3pid_allowed", PasswordAuthProvider, requests::Is3pidAllowed, CheckAnswer, Decision;
}
