"""Every callback the bridge forwards: its Synapse category and parameters, how glia's reply
is read, and whether it fails open by default.

Default failure modes (override per callback with the bridge's `fail_open` setting). The rule:
a callback consulted on (nearly) every request, every message or every federated event, or
one whose failure Synapse itself shrugs off, fails *open*, so a dead glia never turns all
traffic into 500s; a gate on one deliberate user action fails *closed*, as Synapse does when
a module raises (that one action fails and can be retried).

| fails open (no opinion)                        | fails closed (raise)                       |
|------------------------------------------------|--------------------------------------------|
| check_event_for_spam, check_event_allowed,     | user_may_join_room, user_may_invite,       |
| should_drop_federated_event,                   | federated_user_may_invite,                 |
| check_media_file_for_spam,                     | user_may_send_3pid_invite,                 |
| check_username_for_spam, is_user_expired,      | user_may_create_room,                      |
| the notifications (on_new_event, ...,          | user_may_create_room_alias,                |
| on_user_registration, on_user_login,           | user_may_publish_room,                     |
| on_logged_out), the presence router,           | user_may_send_state_event,                 |
| the third-party yes/no checks, check_auth,     | check_registration_for_spam,               |
| check_3pid_auth, get_username_/                | check_login_for_spam, on_create_room,      |
| get_displayname_for_registration               | is_3pid_allowed, on_legacy_* (always)      |
"""

from __future__ import annotations

from dataclasses import dataclass

from glia_synapse.replies import (
    CreateRoom,
    EventAllowed,
    InterestedUsers,
    Notify,
    Registration,
    ReplyKind,
    Spam,
    Truthy,
    UsersForStates,
    Value,
    YesNo,
    auth_result,
    legacy_renew,
)

SPAM_CHECKER = "spam_checker"
THIRD_PARTY_RULES = "third_party_rules"
ACCOUNT_VALIDITY = "account_validity"
PRESENCE_ROUTER = "presence_router"
PASSWORD_AUTH = "password_auth_provider"

#: The ModuleApi method registering each category's callbacks.
REGISTER_METHODS = {
    SPAM_CHECKER: "register_spam_checker_callbacks",
    THIRD_PARTY_RULES: "register_third_party_rules_callbacks",
    ACCOUNT_VALIDITY: "register_account_validity_callbacks",
    PRESENCE_ROUTER: "register_presence_router_callbacks",
    PASSWORD_AUTH: "register_password_auth_provider_callbacks",
}


@dataclass(frozen=True)
class CallbackSpec:
    """One forwarded callback."""

    #: Synapse's (and glia's) callback name.
    name: str
    #: Which `register_*_callbacks` takes it.
    category: str
    #: Synapse's positional parameters, by name (glia's request keys).
    params: tuple[str, ...]
    #: How glia's reply becomes Synapse's value.
    reply: ReplyKind
    #: Default failure mode: return the "no opinion" value (True) or raise (False).
    fail_open: bool
    #: Parameters not sent to glia (e.g. the media file's bytes).
    skip: tuple[str, ...] = ()
    #: Whether the bridge may fail open at all (the legacy slots have no neutral value).
    may_fail_open: bool = True
    #: Registered only when listed explicitly or served by glia: registering it takes over
    #: one of Synapse's own endpoints.
    takes_over_endpoint: bool = False


def _spec(name: str, category: str, params: str, reply: ReplyKind, fail_open: bool, **kw: object) -> CallbackSpec:
    return CallbackSpec(name, category, tuple(params.split()), reply, fail_open, **kw)  # type: ignore[arg-type]


_SPAM = Spam()
_YES_NO = YesNo()
_NOTIFY = Notify()
_AUTH = Value(key="user_id", wrap=auth_result)
_NAME = Value(key="name")
_LEGACY_RENEW = Value(types=(dict,), wrap=legacy_renew, required=True)
_LEGACY_ADMIN = Value(types=(int,), required=True)

_S, _T, _A, _P, _W = SPAM_CHECKER, THIRD_PARTY_RULES, ACCOUNT_VALIDITY, PRESENCE_ROUTER, PASSWORD_AUTH
OPEN, CLOSED = True, False

CALLBACKS: tuple[CallbackSpec, ...] = (
    # spam checker
    _spec("check_event_for_spam", _S, "event", _SPAM, OPEN),
    _spec("should_drop_federated_event", _S, "event", Truthy(), OPEN),
    _spec("user_may_join_room", _S, "user_id room_id is_invited", _SPAM, CLOSED),
    _spec("user_may_invite", _S, "inviter invitee room_id", _SPAM, CLOSED),
    _spec("federated_user_may_invite", _S, "event", _SPAM, CLOSED),
    _spec("user_may_send_3pid_invite", _S, "inviter medium address room_id", _SPAM, CLOSED),
    _spec("user_may_create_room", _S, "user_id room_config", _SPAM, CLOSED),
    _spec("user_may_create_room_alias", _S, "user_id room_alias", _SPAM, CLOSED),
    _spec("user_may_publish_room", _S, "user_id room_id", _SPAM, CLOSED),
    _spec(
        "user_may_send_state_event", _S, "user_id room_id event_type state_key content", Spam(with_fields=False), CLOSED
    ),
    _spec("check_username_for_spam", _S, "user_profile requester_id", Truthy(), OPEN),
    _spec(
        "check_registration_for_spam",
        _S,
        "email_threepid username request_info auth_provider_id",
        Registration(),
        CLOSED,
    ),
    _spec("check_media_file_for_spam", _S, "file_wrapper file_info", _SPAM, OPEN, skip=("file_wrapper",)),
    _spec(
        "check_login_for_spam",
        _S,
        "user_id device_id initial_display_name request_info auth_provider_id",
        _SPAM,
        CLOSED,
    ),
    # third-party event rules
    _spec("check_event_allowed", _T, "event state_events", EventAllowed(), OPEN),
    _spec("on_create_room", _T, "requester request_content is_requester_admin", CreateRoom(), CLOSED),
    _spec("check_threepid_can_be_invited", _T, "medium address state_events", _YES_NO, OPEN),
    _spec("check_visibility_can_be_modified", _T, "room_id state_events new_visibility", _YES_NO, OPEN),
    _spec("on_new_event", _T, "event state_events", _NOTIFY, OPEN),
    _spec("check_can_shutdown_room", _T, "user_id room_id", _YES_NO, OPEN),
    _spec("check_can_deactivate_user", _T, "user_id by_admin", _YES_NO, OPEN),
    _spec("on_profile_update", _T, "user_id new_profile by_admin deactivation", _NOTIFY, OPEN),
    _spec("on_user_deactivation_status_changed", _T, "user_id deactivated by_admin", _NOTIFY, OPEN),
    _spec("on_threepid_bind", _T, "user_id medium address", _NOTIFY, OPEN),
    _spec("on_add_user_third_party_identifier", _T, "user_id medium address", _NOTIFY, OPEN),
    _spec("on_remove_user_third_party_identifier", _T, "user_id medium address", _NOTIFY, OPEN),
    # account validity
    _spec("is_user_expired", _A, "user_id", Value(key="expired", types=(bool,)), OPEN),
    _spec("on_user_registration", _A, "user_id", _NOTIFY, OPEN),
    _spec("on_user_login", _A, "user_id auth_provider_type auth_provider_id", _NOTIFY, OPEN),
    _spec("on_legacy_send_mail", _A, "user_id", _NOTIFY, CLOSED, may_fail_open=False, takes_over_endpoint=True),
    _spec("on_legacy_renew", _A, "renewal_token", _LEGACY_RENEW, CLOSED, may_fail_open=False, takes_over_endpoint=True),
    _spec(
        "on_legacy_admin_request", _A, "request", _LEGACY_ADMIN, CLOSED, may_fail_open=False, takes_over_endpoint=True
    ),
    # presence router (registered as a pair)
    _spec("get_users_for_states", _P, "state_updates", UsersForStates(), OPEN),
    _spec("get_interested_users", _P, "user_id", InterestedUsers(), OPEN),
    # password auth provider (auth checkers are registered per login type, see CHECK_AUTH)
    _spec("check_3pid_auth", _W, "medium address password", _AUTH, OPEN),
    _spec("on_logged_out", _W, "user_id device_id access_token", _NOTIFY, OPEN),
    _spec("get_username_for_registration", _W, "uia_results params", _NAME, OPEN),
    _spec("get_displayname_for_registration", _W, "uia_results params", _NAME, OPEN),
    _spec("is_3pid_allowed", _W, "medium address registration", _YES_NO, CLOSED),
)

#: An auth checker, registered under `auth_checkers` once per login type glia serves.
CHECK_AUTH = _spec("check_auth", _W, "username login_type login_dict", _AUTH, OPEN)

BY_NAME: dict[str, CallbackSpec] = {spec.name: spec for spec in (*CALLBACKS, CHECK_AUTH)}

#: Callbacks Synapse only accepts together.
PRESENCE_PAIR = ("get_users_for_states", "get_interested_users")
