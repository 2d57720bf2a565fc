//! The handle a module registers its callbacks and web resources through, mirroring Synapse's
//! `ModuleApi.register_*_callbacks` methods.

use crate::handler::{ErasedHandler, Handler};
use crate::shared::SharedState;
use crate::web::WebHandler;
use glia_bus_schema::requests::*;
use glia_bus_schema::{Callback, CallbackArgs};
use std::sync::Arc;

/// A registration Synapse would refuse with a `RuntimeError` at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// spec §2.2: `get_users_for_states` and `get_interested_users` go together.
    #[error("presence router callbacks must register neither or both of get_users_for_states and get_interested_users")]
    PresenceRouterPair,
    /// spec §2.2: single-slot callbacks.
    #[error("Tried to register {0} twice")]
    SingleSlotTwice(Callback),
    /// spec §2.2: `on_update` is required in a background-update controller registration.
    #[error("background update controller callbacks need on_update (default_batch_size and min_batch_size only come with it)")]
    BackgroundControllerWithoutOnUpdate,
    /// spec §2.2: the same login type registered twice by one module with different fields.
    #[error("login type {login_type:?} registered with fields {first:?} and then {second:?}")]
    AuthFieldsConflict {
        /// The login type.
        login_type: String,
        /// The fields registered first.
        first: Vec<String>,
        /// The fields registered later.
        second: Vec<String>,
    },
}

impl From<RegistrationError> for crate::ModuleError {
    fn from(e: RegistrationError) -> Self {
        // A refused registration fails the constructor; rebuilding would fail the same way.
        crate::ModuleError::failed(e.to_string())
    }
}

/// An auth checker for one login type (an entry of Synapse's `auth_checkers` dict).
#[derive(Clone)]
pub struct AuthChecker {
    /// The login type, such as `m.login.password` or `com.example.sso`.
    pub login_type: String,
    /// The fields the login dict must carry.
    pub fields: Vec<String>,
    /// The `check_auth` handler.
    pub handler: ErasedHandler,
}

/// Everything one module registered, in registration order.
#[derive(Clone, Default)]
pub struct Registrations {
    /// Callbacks other than auth checkers; a callback may appear more than once.
    pub callbacks: Vec<(Callback, ErasedHandler)>,
    /// Auth checkers, by login type.
    pub auth_checkers: Vec<AuthChecker>,
    /// Web resources, in registration order.
    pub web_resources: Vec<WebResource>,
}

/// A web resource a module serves.
#[derive(Clone)]
pub struct WebResource {
    /// The path it is registered at.
    pub path: String,
    /// Whether it also serves every path below `path` (a Twisted resource with `isLeaf`);
    /// otherwise only `path` itself, as Synapse's JSON resources do.
    pub subtree: bool,
    /// The handler.
    pub handler: WebHandler,
}

/// What a module's constructor receives: its name, the register methods, and the state its
/// instances share.
pub struct ModuleApi {
    module_name: String,
    registrations: Registrations,
    shared: SharedState,
}

macro_rules! category {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $req:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Default)]
        pub struct $name {
            $(
                #[doc = concat!("`", stringify!($field), "`")]
                pub $field: Option<Handler<$req>>,
            )*
        }

        impl $name {
            fn into_slots(self) -> Vec<(Callback, ErasedHandler)> {
                let mut slots = Vec::new();
                $(
                    if let Some(h) = self.$field {
                        slots.push((<$req as CallbackArgs>::CALLBACK, h.erase()));
                    }
                )*
                slots
            }
        }
    };
}

category!(
    /// The arguments of `register_spam_checker_callbacks`.
    SpamCheckerCallbacks {
        check_event_for_spam: CheckEventForSpam,
        should_drop_federated_event: ShouldDropFederatedEvent,
        user_may_join_room: UserMayJoinRoom,
        user_may_invite: UserMayInvite,
        federated_user_may_invite: FederatedUserMayInvite,
        user_may_send_3pid_invite: UserMaySend3pidInvite,
        user_may_create_room: UserMayCreateRoom,
        user_may_create_room_alias: UserMayCreateRoomAlias,
        user_may_publish_room: UserMayPublishRoom,
        user_may_send_state_event: UserMaySendStateEvent,
        check_username_for_spam: CheckUsernameForSpam,
        check_registration_for_spam: CheckRegistrationForSpam,
        check_media_file_for_spam: CheckMediaFileForSpam,
        check_login_for_spam: CheckLoginForSpam,
    }
);

category!(
    /// The arguments of `register_third_party_rules_callbacks`.
    ThirdPartyRulesCallbacks {
        check_event_allowed: CheckEventAllowed,
        on_create_room: OnCreateRoom,
        check_threepid_can_be_invited: CheckThreepidCanBeInvited,
        check_visibility_can_be_modified: CheckVisibilityCanBeModified,
        on_new_event: OnNewEvent,
        check_can_shutdown_room: CheckCanShutdownRoom,
        check_can_deactivate_user: CheckCanDeactivateUser,
        on_profile_update: OnProfileUpdate,
        on_user_deactivation_status_changed: OnUserDeactivationStatusChanged,
        on_threepid_bind: OnThreepidBind,
        on_add_user_third_party_identifier: OnAddUserThirdPartyIdentifier,
        on_remove_user_third_party_identifier: OnRemoveUserThirdPartyIdentifier,
    }
);

category!(
    /// The arguments of `register_account_validity_callbacks`.
    AccountValidityCallbacks {
        is_user_expired: IsUserExpired,
        on_user_registration: OnUserRegistration,
        on_user_login: OnUserLogin,
        on_legacy_send_mail: OnLegacySendMail,
        on_legacy_renew: OnLegacyRenew,
        on_legacy_admin_request: OnLegacyAdminRequest,
    }
);

category!(
    /// The arguments of `register_presence_router_callbacks`: both or neither.
    PresenceRouterCallbacks {
        get_users_for_states: GetUsersForStates,
        get_interested_users: GetInterestedUsers,
    }
);

category!(
    /// The arguments of `register_account_data_callbacks`.
    AccountDataCallbacks {
        on_account_data_updated: OnAccountDataUpdated,
    }
);

category!(
    /// The arguments of `register_media_repository_callbacks`.
    MediaRepositoryCallbacks {
        get_media_config_for_user: GetMediaConfigForUser,
        is_user_allowed_to_upload_media_of_size: IsUserAllowedToUploadMediaOfSize,
        get_media_upload_limits_for_user: GetMediaUploadLimitsForUser,
        on_media_upload_limit_exceeded: OnMediaUploadLimitExceeded,
    }
);

category!(
    /// The arguments of `register_ratelimit_callbacks`.
    RatelimitCallbacks {
        get_ratelimit_override_for_user: GetRatelimitOverrideForUser,
    }
);

category!(
    /// The arguments of `register_federation_callbacks`.
    FederationCallbacks {
        on_event_delivered_over_federation: OnEventDeliveredOverFederation,
    }
);

/// The arguments of `register_background_update_controller_callbacks`: `on_update` is
/// required, as in Synapse.
pub struct BackgroundUpdateControllerCallbacks {
    /// `on_update`: the target duration of each batch.
    pub on_update: Handler<OnUpdate>,
    /// `default_batch_size`.
    pub default_batch_size: Option<Handler<DefaultBatchSize>>,
    /// `min_batch_size`.
    pub min_batch_size: Option<Handler<MinBatchSize>>,
}

/// An `auth_checkers` entry: `(login_type, fields)` and its handler.
pub type AuthCheckerEntry = ((String, Vec<String>), Handler<CheckAuth>);

/// The arguments of `register_password_auth_provider_callbacks`.
#[derive(Default)]
pub struct PasswordAuthProviderCallbacks {
    /// `auth_checkers`: `(login_type, fields)` to `check_auth`.
    pub auth_checkers: Vec<AuthCheckerEntry>,
    /// `check_3pid_auth`.
    pub check_3pid_auth: Option<Handler<Check3pidAuth>>,
    /// `on_logged_out`.
    pub on_logged_out: Option<Handler<OnLoggedOut>>,
    /// `get_username_for_registration`.
    pub get_username_for_registration: Option<Handler<GetUsernameForRegistration>>,
    /// `get_displayname_for_registration`.
    pub get_displayname_for_registration: Option<Handler<GetDisplaynameForRegistration>>,
    /// `is_3pid_allowed`.
    pub is_3pid_allowed: Option<Handler<Is3pidAllowed>>,
}

/// Callbacks of which Synapse keeps a single registration and refuses a second (spec §2.2).
pub const SINGLE_SLOT: &[Callback] = &[
    Callback::OnLegacySendMail,
    Callback::OnLegacyRenew,
    Callback::OnLegacyAdminRequest,
];

/// The background-update controller's callbacks: Synapse keeps the first registration of the
/// three together and ignores later ones entirely, with a warning (spec §2.2).
pub const BACKGROUND_CONTROLLER: &[Callback] = &[
    Callback::OnUpdate,
    Callback::DefaultBatchSize,
    Callback::MinBatchSize,
];

/// The presence router's pair: both or neither (spec §2.2).
pub const PRESENCE_PAIR: [Callback; 2] =
    [Callback::GetUsersForStates, Callback::GetInterestedUsers];

/// Whether a login type registered with `earlier` fields refuses a registration with `later`
/// ones, as Synapse decides it: its check compares the login type with the earlier field list
/// rather than the lists, so it refuses only when that list names the login type itself;
/// otherwise the later list wins (Synapse checks a login against it) and every module's
/// checker of the type is still asked (spec §2.2).
pub fn login_fields_clash(login_type: &str, earlier: &[String], later: &[String]) -> bool {
    earlier != later && earlier.iter().any(|f| f == login_type)
}

/// Checks the registrations of one module that describes itself (a remote module, or a
/// `callbacks:` list in the config) against the rules Synapse enforces when a module
/// registers (spec §2.2); `ModuleApi`'s methods enforce the same rules as they are called.
pub fn check_described(
    callbacks: &[Callback],
    auth_checkers: &[(String, Vec<String>)],
) -> Result<(), RegistrationError> {
    let has = |c: Callback| callbacks.contains(&c);
    if has(PRESENCE_PAIR[0]) != has(PRESENCE_PAIR[1]) {
        return Err(RegistrationError::PresenceRouterPair);
    }
    for single in SINGLE_SLOT {
        if callbacks.iter().filter(|c| *c == single).count() > 1 {
            return Err(RegistrationError::SingleSlotTwice(*single));
        }
    }
    if !has(Callback::OnUpdate) && (has(Callback::DefaultBatchSize) || has(Callback::MinBatchSize))
    {
        return Err(RegistrationError::BackgroundControllerWithoutOnUpdate);
    }
    for (i, (login_type, fields)) in auth_checkers.iter().enumerate() {
        if let Some((_, first)) = auth_checkers[..i]
            .iter()
            .rev()
            .find(|(t, _)| t == login_type)
            .filter(|(_, first)| login_fields_clash(login_type, first, fields))
        {
            return Err(RegistrationError::AuthFieldsConflict {
                login_type: login_type.clone(),
                first: first.clone(),
                second: fields.clone(),
            });
        }
    }
    Ok(())
}

impl ModuleApi {
    /// A handle for the module instance named `module_name`, alone with its state.
    pub fn new(module_name: impl Into<String>) -> Self {
        Self::sharing(module_name, SharedState::new())
    }

    /// A handle for an instance of the module entry named `module_name` whose instances
    /// share `shared` (see [`ModuleApi::shared`]).
    pub fn sharing(module_name: impl Into<String>, shared: SharedState) -> Self {
        ModuleApi {
            module_name: module_name.into(),
            registrations: Registrations::default(),
            shared,
        }
    }

    /// The `T` every instance of this module entry shares, made by `init` the first time.
    /// A module keeping its state here, behind a lock, can declare
    /// [`Module::STATELESS`](crate::Module::STATELESS): its instances may run one per
    /// dispatching thread and still see one state. The state outlives an instance rebuilt
    /// after a crash; a reload that changes the entry starts with new state.
    pub fn shared<T: Send + Sync + 'static>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        self.shared.get_or_init(init)
    }

    /// The instance's name in the config (for logs).
    pub fn module_name(&self) -> &str {
        &self.module_name
    }

    /// Registers spam-checker callbacks.
    pub fn register_spam_checker_callbacks(&mut self, callbacks: SpamCheckerCallbacks) {
        self.registrations.callbacks.extend(callbacks.into_slots());
    }

    /// Registers third-party event rules callbacks.
    pub fn register_third_party_rules_callbacks(&mut self, callbacks: ThirdPartyRulesCallbacks) {
        self.registrations.callbacks.extend(callbacks.into_slots());
    }

    /// Registers account-validity callbacks; a single-slot callback registered twice is refused.
    pub fn register_account_validity_callbacks(
        &mut self,
        callbacks: AccountValidityCallbacks,
    ) -> Result<(), RegistrationError> {
        let slots = callbacks.into_slots();
        for (callback, _) in &slots {
            let taken = self
                .registrations
                .callbacks
                .iter()
                .any(|(c, _)| c == callback);
            if SINGLE_SLOT.contains(callback) && taken {
                return Err(RegistrationError::SingleSlotTwice(*callback));
            }
        }
        self.registrations.callbacks.extend(slots);
        Ok(())
    }

    /// Registers a presence router: both callbacks or neither.
    pub fn register_presence_router_callbacks(
        &mut self,
        callbacks: PresenceRouterCallbacks,
    ) -> Result<(), RegistrationError> {
        if callbacks.get_users_for_states.is_some() != callbacks.get_interested_users.is_some() {
            return Err(RegistrationError::PresenceRouterPair);
        }
        self.registrations.callbacks.extend(callbacks.into_slots());
        Ok(())
    }

    /// Registers password auth provider callbacks.
    pub fn register_password_auth_provider_callbacks(
        &mut self,
        callbacks: PasswordAuthProviderCallbacks,
    ) -> Result<(), RegistrationError> {
        for ((login_type, fields), handler) in callbacks.auth_checkers {
            if let Some(existing) = self
                .registrations
                .auth_checkers
                .iter()
                .rev()
                .find(|c| c.login_type == login_type)
                .filter(|c| login_fields_clash(&login_type, &c.fields, &fields))
            {
                return Err(RegistrationError::AuthFieldsConflict {
                    login_type,
                    first: existing.fields.clone(),
                    second: fields,
                });
            }
            self.registrations.auth_checkers.push(AuthChecker {
                login_type,
                fields,
                handler: handler.erase(),
            });
        }
        let mut slots = Vec::new();
        let PasswordAuthProviderCallbacks {
            check_3pid_auth,
            on_logged_out,
            get_username_for_registration,
            get_displayname_for_registration,
            is_3pid_allowed,
            ..
        } = callbacks;
        push(&mut slots, check_3pid_auth);
        push(&mut slots, on_logged_out);
        push(&mut slots, get_username_for_registration);
        push(&mut slots, get_displayname_for_registration);
        push(&mut slots, is_3pid_allowed);
        self.registrations.callbacks.extend(slots);
        Ok(())
    }

    /// Registers account data callbacks.
    pub fn register_account_data_callbacks(&mut self, callbacks: AccountDataCallbacks) {
        self.registrations.callbacks.extend(callbacks.into_slots());
    }

    /// Registers media repository callbacks.
    pub fn register_media_repository_callbacks(&mut self, callbacks: MediaRepositoryCallbacks) {
        self.registrations.callbacks.extend(callbacks.into_slots());
    }

    /// Registers ratelimit callbacks.
    pub fn register_ratelimit_callbacks(&mut self, callbacks: RatelimitCallbacks) {
        self.registrations.callbacks.extend(callbacks.into_slots());
    }

    /// Registers federation callbacks.
    pub fn register_federation_callbacks(&mut self, callbacks: FederationCallbacks) {
        self.registrations.callbacks.extend(callbacks.into_slots());
    }

    /// Registers `add_field_to_unsigned_callback`, called for every event served to a client
    /// (keep it cheap).
    pub fn register_add_extra_fields_to_unsigned_client_event_callbacks(
        &mut self,
        add_field_to_unsigned_callback: Handler<AddFieldToUnsigned>,
    ) {
        self.registrations.callbacks.push((
            Callback::AddFieldToUnsigned,
            add_field_to_unsigned_callback.erase(),
        ));
    }

    /// Registers a background-update controller. As in Synapse, a second registration (by
    /// this module or, at planning, by a later one) is ignored entirely, with a warning.
    pub fn register_background_update_controller_callbacks(
        &mut self,
        callbacks: BackgroundUpdateControllerCallbacks,
    ) {
        if self
            .registrations
            .callbacks
            .iter()
            .any(|(c, _)| *c == Callback::OnUpdate)
        {
            tracing::warn!(module = %self.module_name, "background update controller registered twice; keeping the first");
            return;
        }
        let mut slots = vec![(Callback::OnUpdate, callbacks.on_update.erase())];
        push(&mut slots, callbacks.default_batch_size);
        push(&mut slots, callbacks.min_batch_size);
        self.registrations.callbacks.extend(slots);
    }

    /// Registers a type-erased handler for `callback` (for adapters; typed modules use the
    /// category methods above, which also enforce Synapse's pairing rules). `check_auth`
    /// cannot be registered this way: use `register_password_auth_provider_callbacks`.
    pub fn register_erased(
        &mut self,
        callback: Callback,
        handler: ErasedHandler,
    ) -> Result<(), RegistrationError> {
        if SINGLE_SLOT.contains(&callback)
            && self
                .registrations
                .callbacks
                .iter()
                .any(|(c, _)| *c == callback)
        {
            return Err(RegistrationError::SingleSlotTwice(callback));
        }
        self.registrations.callbacks.push((callback, handler));
        Ok(())
    }

    /// Registers a type-erased auth checker for `login_type` with `fields`.
    pub fn register_erased_auth_checker(
        &mut self,
        login_type: impl Into<String>,
        fields: Vec<String>,
        handler: ErasedHandler,
    ) {
        self.registrations.auth_checkers.push(AuthChecker {
            login_type: login_type.into(),
            fields,
            handler,
        });
    }

    /// Serves `path` itself with `handler` (Synapse's `register_web_resource` with a JSON
    /// resource, which is not a leaf: `path/x` is not served). Where a path is claimed twice,
    /// the first module in config order wins; paths under `/_matrix` are refused at start-up
    /// by the runtime.
    pub fn register_web_resource(&mut self, path: impl Into<String>, handler: WebHandler) {
        self.registrations.web_resources.push(WebResource {
            path: path.into(),
            subtree: false,
            handler,
        });
    }

    /// Serves `path` and every path below it with `handler` (a Twisted leaf resource
    /// registered with `register_web_resource`).
    pub fn register_web_resource_tree(&mut self, path: impl Into<String>, handler: WebHandler) {
        self.registrations.web_resources.push(WebResource {
            path: path.into(),
            subtree: true,
            handler,
        });
    }

    /// Everything registered so far; the runtime takes it once the constructor returns.
    pub fn into_registrations(self) -> Registrations {
        self.registrations
    }
}

fn push<R: CallbackArgs>(slots: &mut Vec<(Callback, ErasedHandler)>, handler: Option<Handler<R>>) {
    if let Some(h) = handler {
        slots.push((R::CALLBACK, h.erase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Synapse refuses a login type registered again with other fields only when the earlier
    /// field list names the login type itself; anything else is accepted, the later list wins.
    #[test]
    fn a_login_type_with_two_field_lists_is_refused_only_as_synapse_refuses_it() {
        assert!(!login_fields_clash("t", &fields(&["a"]), &fields(&["b"])));
        assert!(!login_fields_clash("t", &fields(&["t"]), &fields(&["t"])));
        assert!(login_fields_clash("t", &fields(&["t"]), &fields(&["b"])));
        let described = [
            ("t".to_owned(), fields(&["a"])),
            ("t".to_owned(), fields(&["b"])),
        ];
        assert!(check_described(&[], &described).is_ok());
        let refused = [
            ("t".to_owned(), fields(&["t"])),
            ("t".to_owned(), fields(&["b"])),
        ];
        assert!(matches!(
            check_described(&[], &refused),
            Err(RegistrationError::AuthFieldsConflict { .. })
        ));
    }
}
