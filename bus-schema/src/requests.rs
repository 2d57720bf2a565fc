//! One request type per callback, its fields named as Synapse names the arguments.

use crate::shapes::{
    Event, FederationDelivery, FileInfo, JsonObject, MediaFile, MediaUploadLimit, ProfileInfo,
    RequestInfo, Requester, RoomAlias, StateMap, UserPresenceState, UserProfile, Visibility,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! request {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }
    };
}

// Spam checker (spec §3.1).

request!(
    /// `check_event_for_spam(event)`.
    CheckEventForSpam { event: Event });
request!(
    /// `should_drop_federated_event(event)`.
    ShouldDropFederatedEvent { event: Event });
request!(
    /// `user_may_join_room(user_id, room_id, is_invited)`.
    UserMayJoinRoom { user_id: String, room_id: String, #[serde(default)] is_invited: bool });
request!(
    /// `user_may_invite(inviter, invitee, room_id)`.
    UserMayInvite { inviter: String, invitee: String, room_id: String });
request!(
    /// `federated_user_may_invite(event)`: the invite, with stripped state in `unsigned`.
    FederatedUserMayInvite { event: Event });
request!(
    /// `user_may_send_3pid_invite(inviter, medium, address, room_id)`.
    UserMaySend3pidInvite { inviter: String, medium: String, address: String, room_id: String });
request!(
    /// `user_may_create_room(user_id, room_config)`: the `/createRoom` body.
    UserMayCreateRoom { user_id: String, #[serde(default)] room_config: JsonObject });
request!(
    /// `user_may_create_room_alias(user_id, room_alias)`.
    UserMayCreateRoomAlias { user_id: String, room_alias: RoomAlias });
request!(
    /// `user_may_publish_room(user_id, room_id)`.
    UserMayPublishRoom { user_id: String, room_id: String });
request!(
/// `user_may_send_state_event(user_id, room_id, event_type, state_key, content)`.
UserMaySendStateEvent {
    user_id: String,
    room_id: String,
    event_type: String,
    state_key: String,
    #[serde(default)] content: JsonObject,
});
request!(
    /// `check_username_for_spam(user_profile, requester_id)`.
    CheckUsernameForSpam { user_profile: UserProfile, #[serde(default)] requester_id: Option<String> });
request!(
/// `check_registration_for_spam(email_threepid, username, request_info, auth_provider_id)`.
CheckRegistrationForSpam {
    #[serde(default)] email_threepid: Option<JsonObject>,
    #[serde(default)] username: Option<String>,
    #[serde(default)] request_info: Vec<RequestInfo>,
    #[serde(default)] auth_provider_id: Option<String>,
});
request!(
/// `check_media_file_for_spam(file_wrapper, file_info)`: the file's description and, when
/// the homeserver sends them, its first bytes (Synapse's `ReadableFileWrapper`, bounded).
CheckMediaFileForSpam {
    file_info: FileInfo,
    /// The file's content, up to the sender's limit; absent when it sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")] file: Option<MediaFile>,
});
request!(
/// `check_login_for_spam(user_id, device_id, initial_display_name, request_info, auth_provider_id)`.
CheckLoginForSpam {
    user_id: String,
    #[serde(default)] device_id: Option<String>,
    #[serde(default)] initial_display_name: Option<String>,
    #[serde(default)] request_info: Vec<RequestInfo>,
    #[serde(default)] auth_provider_id: Option<String>,
});

// Third-party event rules (spec §3.2).

request!(
    /// `check_event_allowed(event, state_events)`: state before the event.
    CheckEventAllowed { event: Event, #[serde(default)] state_events: StateMap });
request!(
    /// `on_create_room(requester, request_content, is_requester_admin)`.
    OnCreateRoom { requester: Requester, #[serde(default)] request_content: JsonObject, #[serde(default)] is_requester_admin: bool });
request!(
    /// `check_threepid_can_be_invited(medium, address, state_events)`.
    CheckThreepidCanBeInvited { medium: String, address: String, #[serde(default)] state_events: StateMap });
request!(
    /// `check_visibility_can_be_modified(room_id, state_events, new_visibility)`.
    CheckVisibilityCanBeModified { room_id: String, #[serde(default)] state_events: StateMap, new_visibility: Visibility });
request!(
    /// `on_new_event(event, state_events)`: current state, after the event.
    OnNewEvent { event: Event, #[serde(default)] state_events: StateMap });
request!(
    /// `check_can_shutdown_room(user_id, room_id)`; `user_id` is null when no user asked.
    CheckCanShutdownRoom { #[serde(default)] user_id: Option<String>, room_id: String });
request!(
    /// `check_can_deactivate_user(user_id, by_admin)`.
    CheckCanDeactivateUser { user_id: String, #[serde(default)] by_admin: bool });
request!(
    /// `on_profile_update(user_id, new_profile, by_admin, deactivation)`.
    OnProfileUpdate { user_id: String, new_profile: ProfileInfo, #[serde(default)] by_admin: bool, #[serde(default)] deactivation: bool });
request!(
    /// `on_user_deactivation_status_changed(user_id, deactivated, by_admin)`.
    OnUserDeactivationStatusChanged { user_id: String, deactivated: bool, #[serde(default)] by_admin: bool });
request!(
    /// `on_threepid_bind(user_id, medium, address)` (deprecated in Synapse).
    OnThreepidBind { user_id: String, medium: String, address: String });
request!(
    /// `on_add_user_third_party_identifier(user_id, medium, address)`.
    OnAddUserThirdPartyIdentifier { user_id: String, medium: String, address: String });
request!(
    /// `on_remove_user_third_party_identifier(user_id, medium, address)`.
    OnRemoveUserThirdPartyIdentifier { user_id: String, medium: String, address: String });

// Account validity (spec §3.3).

request!(
    /// `is_user_expired(user_id)`.
    IsUserExpired { user_id: String });
request!(
    /// `on_user_registration(user_id)`.
    OnUserRegistration { user_id: String });
request!(
    /// `on_user_login(user_id, auth_provider_type, auth_provider_id)`.
    OnUserLogin { user_id: String, #[serde(default)] auth_provider_type: Option<String>, #[serde(default)] auth_provider_id: Option<String> });

request!(
    /// `on_legacy_send_mail(user_id)`: takes over `/account_validity/send_mail`.
    OnLegacySendMail { user_id: String });
request!(
    /// `on_legacy_renew(renewal_token)`: takes over `/account_validity/renew`.
    OnLegacyRenew { renewal_token: String });
request!(
    /// `on_legacy_admin_request(request)`: takes over the admin account-validity endpoint; the
    /// request's JSON body (`user_id`, `expiration_ts`, `enable_renewal_emails`).
    OnLegacyAdminRequest { #[serde(default)] request: JsonObject });

// Presence router (spec §3.4).

request!(
    /// `get_users_for_states(state_updates)`.
    GetUsersForStates { state_updates: Vec<UserPresenceState> });
request!(
    /// `get_interested_users(user_id)`.
    GetInterestedUsers { user_id: String });

// Password auth providers (spec §3.5).

request!(
    /// An auth checker `check_auth(username, login_type, login_dict)`; only modules that
    /// registered `login_type` are asked, and `login_dict` holds exactly their fields.
    CheckAuth { username: String, login_type: String, #[serde(default)] login_dict: JsonObject });
request!(
    /// `check_3pid_auth(medium, address, password)`.
    Check3pidAuth { medium: String, address: String, password: String });
request!(
    /// glia's own, not a Synapse callback: the login result (Synapse's `LoginResponse`) for
    /// the post-login callback an auth checker of `module` returned under `handle` (see
    /// `AuthReply::post_login`). Synapse awaits that callback once the login completes; the
    /// bridge's stand-in for it sends this and waits for the answer.
    PostLogin { module: String, handle: String, #[serde(default)] login_result: JsonObject });
request!(
    /// `on_logged_out(user_id, device_id, access_token)`.
    OnLoggedOut { user_id: String, #[serde(default)] device_id: Option<String>, access_token: String });
request!(
    /// `get_username_for_registration(uia_results, params)`.
    GetUsernameForRegistration { #[serde(default)] uia_results: JsonObject, #[serde(default)] params: JsonObject });
request!(
    /// `get_displayname_for_registration(uia_results, params)`.
    GetDisplaynameForRegistration { #[serde(default)] uia_results: JsonObject, #[serde(default)] params: JsonObject });
request!(
    /// `is_3pid_allowed(medium, address, registration)`.
    Is3pidAllowed { medium: String, address: String, #[serde(default)] registration: bool });

// Account data (spec §3.6).

request!(
/// `on_account_data_updated(user_id, room_id, account_data_type, content)`; a deletion is
/// reported with an empty `content`.
OnAccountDataUpdated {
    user_id: String,
    /// `None` for global account data.
    #[serde(default)] room_id: Option<String>,
    account_data_type: String,
    #[serde(default)] content: JsonObject,
});

// Media repository (spec §3.7).

request!(
    /// `get_media_config_for_user(user_id)`.
    GetMediaConfigForUser { user_id: String });
request!(
    /// `is_user_allowed_to_upload_media_of_size(user_id, size)`: `size` in bytes.
    IsUserAllowedToUploadMediaOfSize { user_id: String, size: u64 });
request!(
    /// `get_media_upload_limits_for_user(user_id)`.
    GetMediaUploadLimitsForUser { user_id: String });
request!(
/// `on_media_upload_limit_exceeded(user_id, limit, sent_bytes, attempted_bytes)`.
OnMediaUploadLimitExceeded {
    user_id: String,
    /// The limit that was exceeded.
    limit: MediaUploadLimit,
    /// Bytes the user uploaded in the limit's period before this upload.
    sent_bytes: u64,
    /// The size of the refused upload.
    attempted_bytes: u64,
});

// Ratelimit (spec §3.8).

request!(
    /// `get_ratelimit_override_for_user(user_id, limiter_name)`, e.g. `rc_invites.per_room`.
    GetRatelimitOverrideForUser { user_id: String, limiter_name: String });

// Extra unsigned fields (spec §3.9).

request!(
    /// `add_field_to_unsigned_callback(event)`: called for every event served to a client.
    AddFieldToUnsigned { event: Event });

// Background-update controller (spec §3.10).

request!(
    /// `on_update(update_name, database_name, one_shot)`: called before each batch; the answer
    /// is the batch's target duration in milliseconds (ignored when `one_shot`).
    OnUpdate { update_name: String, database_name: String, #[serde(default)] one_shot: bool });
request!(
    /// `default_batch_size(update_name, database_name)`.
    DefaultBatchSize { update_name: String, database_name: String });
request!(
    /// `min_batch_size(update_name, database_name)`.
    MinBatchSize { update_name: String, database_name: String });

// Federation (`register_federation_callbacks`, Synapse 1.158).

request!(
    /// `on_event_delivered_over_federation(delivery)`: events another server received from
    /// this one (or pulled from it).
    OnEventDeliveredOverFederation { delivery: FederationDelivery });
