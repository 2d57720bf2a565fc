//! The table of callbacks: each one's name, category, request, module answer and reply.
//!
//! Everything that lists callbacks (the `Callback` enum, the request and answer enums, the
//! reply enum and the JSON Schema) is generated from the single table at the bottom.

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
    /// `register_account_data_callbacks`.
    AccountData,
    /// `register_media_repository_callbacks`.
    MediaRepository,
    /// `register_ratelimit_callbacks`.
    Ratelimit,
    /// `register_add_extra_fields_to_unsigned_client_event_callbacks`.
    UnsignedFields,
    /// `register_background_update_controller_callbacks`.
    BackgroundUpdates,
    /// `register_federation_callbacks`.
    Federation,
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
            Category::AccountData => "account_data",
            Category::MediaRepository => "media_repository",
            Category::Ratelimit => "ratelimit",
            Category::UnsignedFields => "add_extra_fields_to_unsigned_client_event",
            Category::BackgroundUpdates => "background_update_controller",
            Category::Federation => "federation",
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

fn decode_args<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ArgsError> {
    // Tracking the path costs on every field; it is only needed to name a bad one, so it
    // runs only when the plain decoder fails, which it does on the same input.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(args_error)?;
    de.end().map_err(|e| ArgsError::NotJson(e.to_string()))?;
    Ok(value)
}

fn decode_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ArgsError> {
    // As in `decode_args`: the path is tracked only to name a bad field.
    if let Ok(decoded) = T::deserialize(&value) {
        return Ok(decoded);
    }
    serde_path_to_error::deserialize(value).map_err(args_error)
}

/// How deep serde_json nests arrays and objects before it stops (its recursion limit).
pub const MAX_DEPTH: usize = 128;

/// Whether serde_json gave up because the input nests deeper than [`MAX_DEPTH`]. It files
/// that under syntax errors and exposes no code for it, so its message is the only sign;
/// `deep_nesting_is_bad_json_not_not_json` fails if a new serde_json words it otherwise.
fn too_deep(e: &serde_json::Error) -> bool {
    e.is_syntax() && e.to_string().starts_with("recursion limit exceeded")
}

/// A syntax error is `NotJson`; anything else names the field it is about. JSON nested too
/// deep for the decoder is JSON all the same: a bad field.
fn args_error(e: serde_path_to_error::Error<serde_json::Error>) -> ArgsError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if too_deep(&inner) {
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

            /// Decodes a callback's arguments from any serde decoder (the embedded placement
            /// reads Python objects with one); the error is the decoder's, naming no field.
            pub fn from_args_deserializer<'de, D: serde::Deserializer<'de>>(callback: Callback, args: D) -> Result<Self, D::Error> {
                Ok(match callback {
                    $(Callback::$variant => CallbackRequest::$variant(serde::Deserialize::deserialize(args)?),)*
                })
            }

            /// Decodes a callback's arguments from JSON bytes; the error names the bad field.
            pub fn from_json_slice(callback: Callback, args: &[u8]) -> Result<Self, ArgsError> {
                Ok(match callback {
                    $(Callback::$variant => CallbackRequest::$variant(decode_args(args)?),)*
                })
            }

            /// Decodes a callback's arguments from a JSON value; the error names the bad field.
            pub fn from_json_value(callback: Callback, args: serde_json::Value) -> Result<Self, ArgsError> {
                Ok(match callback {
                    $(Callback::$variant => CallbackRequest::$variant(decode_value(args)?),)*
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

            /// The decision, for callbacks whose reply is a [`crate::replies::Decision`].
            pub fn decision(&self) -> Option<&crate::replies::Decision> {
                match self { $(DispatchReply::$variant(r) => crate::replies::Summarize::decision(r)),* }
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

/// The table of every callback, in the order of the spec: `Variant = "synapse_name",
/// Category, request type, module answer type, reply type;`. It calls the macro it is given
/// with the whole table, so every list of callbacks in the contract and in the runtime (the
/// dispatcher, the rules) is generated from these lines. Adding a callback is one line here
/// and one row in the runtime's rules table.
#[macro_export]
macro_rules! for_each_callback {
    ($callback_macro:ident) => {
        $callback_macro! {
            // Spam checker (spec §3.1).
            CheckEventForSpam = "check_event_for_spam", SpamChecker, $crate::requests::CheckEventForSpam, $crate::answers::SpamAnswer, $crate::replies::Decision;
            ShouldDropFederatedEvent = "should_drop_federated_event", SpamChecker, $crate::requests::ShouldDropFederatedEvent, $crate::answers::TruthyAnswer, $crate::replies::Decision;
            UserMayJoinRoom = "user_may_join_room", SpamChecker, $crate::requests::UserMayJoinRoom, $crate::answers::SpamAnswer, $crate::replies::Decision;
            UserMayInvite = "user_may_invite", SpamChecker, $crate::requests::UserMayInvite, $crate::answers::SpamAnswer, $crate::replies::Decision;
            FederatedUserMayInvite = "federated_user_may_invite", SpamChecker, $crate::requests::FederatedUserMayInvite, $crate::answers::SpamAnswer, $crate::replies::Decision;
            UserMaySend3pidInvite = "user_may_send_3pid_invite", SpamChecker, $crate::requests::UserMaySend3pidInvite, $crate::answers::SpamAnswer, $crate::replies::Decision;
            UserMayCreateRoom = "user_may_create_room", SpamChecker, $crate::requests::UserMayCreateRoom, $crate::answers::SpamAnswer, $crate::replies::Decision;
            UserMayCreateRoomAlias = "user_may_create_room_alias", SpamChecker, $crate::requests::UserMayCreateRoomAlias, $crate::answers::SpamAnswer, $crate::replies::Decision;
            UserMayPublishRoom = "user_may_publish_room", SpamChecker, $crate::requests::UserMayPublishRoom, $crate::answers::SpamAnswer, $crate::replies::Decision;
            UserMaySendStateEvent = "user_may_send_state_event", SpamChecker, $crate::requests::UserMaySendStateEvent, $crate::answers::SpamAnswer, $crate::replies::Decision;
            CheckUsernameForSpam = "check_username_for_spam", SpamChecker, $crate::requests::CheckUsernameForSpam, $crate::answers::TruthyAnswer, $crate::replies::Decision;
            CheckRegistrationForSpam = "check_registration_for_spam", SpamChecker, $crate::requests::CheckRegistrationForSpam, $crate::answers::RegistrationAnswer, $crate::replies::Outcome<$crate::replies::RegistrationReply>;
            CheckMediaFileForSpam = "check_media_file_for_spam", SpamChecker, $crate::requests::CheckMediaFileForSpam, $crate::answers::SpamAnswer, $crate::replies::Decision;
            CheckLoginForSpam = "check_login_for_spam", SpamChecker, $crate::requests::CheckLoginForSpam, $crate::answers::SpamAnswer, $crate::replies::Decision;
            // Third-party event rules (spec §3.2).
            CheckEventAllowed = "check_event_allowed", ThirdPartyRules, $crate::requests::CheckEventAllowed, $crate::answers::CheckEventAllowedAnswer, $crate::replies::Decision;
            OnCreateRoom = "on_create_room", ThirdPartyRules, $crate::requests::OnCreateRoom, $crate::answers::OnCreateRoomAnswer, $crate::replies::Decision;
            CheckThreepidCanBeInvited = "check_threepid_can_be_invited", ThirdPartyRules, $crate::requests::CheckThreepidCanBeInvited, $crate::answers::CheckAnswer, $crate::replies::Decision;
            CheckVisibilityCanBeModified = "check_visibility_can_be_modified", ThirdPartyRules, $crate::requests::CheckVisibilityCanBeModified, $crate::answers::CheckAnswer, $crate::replies::Decision;
            OnNewEvent = "on_new_event", ThirdPartyRules, $crate::requests::OnNewEvent, $crate::answers::Ignored, $crate::replies::Decision;
            CheckCanShutdownRoom = "check_can_shutdown_room", ThirdPartyRules, $crate::requests::CheckCanShutdownRoom, $crate::answers::CheckAnswer, $crate::replies::Decision;
            CheckCanDeactivateUser = "check_can_deactivate_user", ThirdPartyRules, $crate::requests::CheckCanDeactivateUser, $crate::answers::CheckAnswer, $crate::replies::Decision;
            OnProfileUpdate = "on_profile_update", ThirdPartyRules, $crate::requests::OnProfileUpdate, $crate::answers::Ignored, $crate::replies::Decision;
            OnUserDeactivationStatusChanged = "on_user_deactivation_status_changed", ThirdPartyRules, $crate::requests::OnUserDeactivationStatusChanged, $crate::answers::Ignored, $crate::replies::Decision;
            OnThreepidBind = "on_threepid_bind", ThirdPartyRules, $crate::requests::OnThreepidBind, $crate::answers::Ignored, $crate::replies::Decision;
            OnAddUserThirdPartyIdentifier = "on_add_user_third_party_identifier", ThirdPartyRules, $crate::requests::OnAddUserThirdPartyIdentifier, $crate::answers::Ignored, $crate::replies::Decision;
            OnRemoveUserThirdPartyIdentifier = "on_remove_user_third_party_identifier", ThirdPartyRules, $crate::requests::OnRemoveUserThirdPartyIdentifier, $crate::answers::Ignored, $crate::replies::Decision;
            // Account validity (spec §3.3).
            IsUserExpired = "is_user_expired", AccountValidity, $crate::requests::IsUserExpired, $crate::answers::ExpiryAnswer, $crate::replies::Outcome<$crate::replies::ExpiryReply>;
            OnUserRegistration = "on_user_registration", AccountValidity, $crate::requests::OnUserRegistration, $crate::answers::Ignored, $crate::replies::Decision;
            OnUserLogin = "on_user_login", AccountValidity, $crate::requests::OnUserLogin, $crate::answers::Ignored, $crate::replies::Decision;
            OnLegacySendMail = "on_legacy_send_mail", AccountValidity, $crate::requests::OnLegacySendMail, $crate::answers::Ignored, $crate::replies::Decision;
            OnLegacyRenew = "on_legacy_renew", AccountValidity, $crate::requests::OnLegacyRenew, $crate::answers::LegacyRenewAnswer, $crate::replies::Outcome<$crate::replies::SlotReply<$crate::answers::LegacyRenewAnswer>>;
            OnLegacyAdminRequest = "on_legacy_admin_request", AccountValidity, $crate::requests::OnLegacyAdminRequest, $crate::answers::LegacyAdminAnswer, $crate::replies::Outcome<$crate::replies::SlotReply<$crate::answers::LegacyAdminAnswer>>;
            // Presence router (spec §3.4).
            GetUsersForStates = "get_users_for_states", PresenceRouter, $crate::requests::GetUsersForStates, $crate::answers::UsersForStatesAnswer, $crate::replies::Outcome<$crate::replies::UsersForStatesReply>;
            GetInterestedUsers = "get_interested_users", PresenceRouter, $crate::requests::GetInterestedUsers, $crate::answers::InterestedUsers, $crate::replies::Outcome<$crate::replies::InterestedUsersReply>;
            // Password auth providers (spec §3.5).
            CheckAuth = "check_auth", PasswordAuthProvider, $crate::requests::CheckAuth, $crate::answers::AuthAnswer, $crate::replies::Outcome<$crate::replies::AuthReply>;
            Check3pidAuth = "check_3pid_auth", PasswordAuthProvider, $crate::requests::Check3pidAuth, $crate::answers::AuthAnswer, $crate::replies::Outcome<$crate::replies::AuthReply>;
            PostLogin = "post_login", PasswordAuthProvider, $crate::requests::PostLogin, $crate::answers::Ignored, $crate::replies::Decision;
            OnLoggedOut = "on_logged_out", PasswordAuthProvider, $crate::requests::OnLoggedOut, $crate::answers::Ignored, $crate::replies::Decision;
            GetUsernameForRegistration = "get_username_for_registration", PasswordAuthProvider, $crate::requests::GetUsernameForRegistration, $crate::answers::NameAnswer, $crate::replies::Outcome<$crate::replies::NameReply>;
            GetDisplaynameForRegistration = "get_displayname_for_registration", PasswordAuthProvider, $crate::requests::GetDisplaynameForRegistration, $crate::answers::NameAnswer, $crate::replies::Outcome<$crate::replies::NameReply>;
            Is3pidAllowed = "is_3pid_allowed", PasswordAuthProvider, $crate::requests::Is3pidAllowed, $crate::answers::CheckAnswer, $crate::replies::Decision;
            // Account data (spec §3.6).
            OnAccountDataUpdated = "on_account_data_updated", AccountData, $crate::requests::OnAccountDataUpdated, $crate::answers::Ignored, $crate::replies::Decision;
            // Media repository (spec §3.7).
            GetMediaConfigForUser = "get_media_config_for_user", MediaRepository, $crate::requests::GetMediaConfigForUser, $crate::answers::MediaConfigAnswer, $crate::replies::Outcome<$crate::replies::ValueReply<$crate::shapes::JsonObject>>;
            IsUserAllowedToUploadMediaOfSize = "is_user_allowed_to_upload_media_of_size", MediaRepository, $crate::requests::IsUserAllowedToUploadMediaOfSize, $crate::answers::TruthyAnswer, $crate::replies::Decision;
            GetMediaUploadLimitsForUser = "get_media_upload_limits_for_user", MediaRepository, $crate::requests::GetMediaUploadLimitsForUser, $crate::answers::UploadLimitsAnswer, $crate::replies::Outcome<$crate::replies::ValueReply<Vec<$crate::shapes::MediaUploadLimit>>>;
            OnMediaUploadLimitExceeded = "on_media_upload_limit_exceeded", MediaRepository, $crate::requests::OnMediaUploadLimitExceeded, $crate::answers::Ignored, $crate::replies::Decision;
            // Ratelimit (spec §3.8).
            GetRatelimitOverrideForUser = "get_ratelimit_override_for_user", Ratelimit, $crate::requests::GetRatelimitOverrideForUser, $crate::answers::RatelimitAnswer, $crate::replies::Outcome<$crate::replies::ValueReply<$crate::shapes::RatelimitOverride>>;
            // Extra unsigned fields (spec §3.9).
            AddFieldToUnsigned = "add_field_to_unsigned", UnsignedFields, $crate::requests::AddFieldToUnsigned, $crate::answers::UnsignedAnswer, $crate::replies::Outcome<$crate::replies::UnsignedReply>;
            // Background-update controller (spec §3.10).
            OnUpdate = "on_update", BackgroundUpdates, $crate::requests::OnUpdate, $crate::answers::UpdateDurationAnswer, $crate::replies::Outcome<$crate::replies::SlotReply<$crate::answers::UpdateDurationAnswer>>;
            DefaultBatchSize = "default_batch_size", BackgroundUpdates, $crate::requests::DefaultBatchSize, $crate::answers::BatchSizeAnswer, $crate::replies::Outcome<$crate::replies::SlotReply<$crate::answers::BatchSizeAnswer>>;
            MinBatchSize = "min_batch_size", BackgroundUpdates, $crate::requests::MinBatchSize, $crate::answers::BatchSizeAnswer, $crate::replies::Outcome<$crate::replies::SlotReply<$crate::answers::BatchSizeAnswer>>;
            // Federation (Synapse 1.158).
            OnEventDeliveredOverFederation = "on_event_delivered_over_federation", Federation, $crate::requests::OnEventDeliveredOverFederation, $crate::answers::Ignored, $crate::replies::Decision;
        }
    };
}

for_each_callback!(callbacks);
