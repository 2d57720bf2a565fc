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
| on_logged_out, on_account_data_updated,        | user_may_send_state_event,                 |
| on_media_upload_limit_exceeded,                | check_registration_for_spam,               |
| on_event_delivered_over_federation), the       | check_login_for_spam, on_create_room,      |
| presence router, the third-party yes/no        | is_3pid_allowed, on_legacy_* (always)      |
| checks, check_auth, check_3pid_auth,           |                                            |
| get_username_/get_displayname_for_registration,|                                            |
| the media config, upload size and limits, the  |                                            |
| ratelimit override, add_field_to_unsigned, the |                                            |
| background-update controller (Synapse's own    |                                            |
| settings)                                      |                                            |

A failure here means glia could not decide. When glia decides that a request fails (a module
raised under failure policy `error`), the bridge raises whatever the callback's mode.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from glia_synapse.replies import (
    Auth,
    CreateRoom,
    EventAllowed,
    InterestedUsers,
    Notify,
    PostLoginHandle,
    Registration,
    ReplyKind,
    Spam,
    Truthy,
    UnsignedFields,
    UsersForStates,
    Value,
    YesNo,
    legacy_renew,
    ratelimit_override,
    upload_limits,
)

SPAM_CHECKER = "spam_checker"
THIRD_PARTY_RULES = "third_party_rules"
ACCOUNT_VALIDITY = "account_validity"
PRESENCE_ROUTER = "presence_router"
PASSWORD_AUTH = "password_auth_provider"
ACCOUNT_DATA = "account_data"
MEDIA_REPOSITORY = "media_repository"
RATELIMIT = "ratelimit"
UNSIGNED_FIELDS = "add_extra_fields_to_unsigned_client_event"
BACKGROUND_UPDATES = "background_update_controller"
FEDERATION = "federation"

# Where Synapse invokes a callback when it runs as a main process and workers (read from
# Synapse 1.163.2's code; `CallbackSpec.invoked_in`, published in docs/synapse-workers.md).
#: The process doing the work, once per occurrence: the one handling the request, or the one
#: Synapse hands the work to (the account-data writer, the federation sender of the
#: destination, the media repository, ...).
WORK = "work"
#: One process for the whole deployment: the one running background tasks
#: (`run_background_tasks_on`, the main process by default).
BACKGROUND = "background"
#: Every process: the one doing the work, and every other process when it hears of it over
#: replication. The bridge forwards it from one of them (`once.FORWARDED_BY`).
EVERY = "every"

#: The ModuleApi method registering each category's callbacks.
REGISTER_METHODS = {
    SPAM_CHECKER: "register_spam_checker_callbacks",
    THIRD_PARTY_RULES: "register_third_party_rules_callbacks",
    ACCOUNT_VALIDITY: "register_account_validity_callbacks",
    PRESENCE_ROUTER: "register_presence_router_callbacks",
    PASSWORD_AUTH: "register_password_auth_provider_callbacks",
    ACCOUNT_DATA: "register_account_data_callbacks",
    MEDIA_REPOSITORY: "register_media_repository_callbacks",
    RATELIMIT: "register_ratelimit_callbacks",
    UNSIGNED_FIELDS: "register_add_extra_fields_to_unsigned_client_event_callbacks",
    BACKGROUND_UPDATES: "register_background_update_controller_callbacks",
    FEDERATION: "register_federation_callbacks",
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
    #: one of Synapse's own behaviours (an endpoint, the background-update pacing), or costs a
    #: round trip for every event served to a client.
    only_when_served: bool = False
    #: The keyword Synapse's register method takes it as, when not its name.
    keyword: str | None = None
    #: The parameter whose file content is sent (its first `media_bytes` bytes).
    file_param: str | None = None
    #: Synapse's own setting (`background_updates.<name>`) used when no module answers.
    synapse_setting: str | None = None
    #: Synapse calls it synchronously for an async context manager whose entry yields the
    #: value (`on_update`).
    context_manager: bool = False
    #: The parameter a reply is reused for while glia says it holds (`valid_until_ms`).
    cache_key: str | None = None
    #: Where Synapse invokes it under workers: `WORK`, `BACKGROUND` or `EVERY`.
    invoked_in: str = WORK

    @property
    def notification(self) -> bool:
        """Whether it only tells modules something (its answer decides nothing), so it is
        not sent to another coordinator once one may have received it."""
        return isinstance(self.reply, Notify)


def _spec(name: str, category: str, params: str, reply: ReplyKind, fail_open: bool, **kw: object) -> CallbackSpec:
    return CallbackSpec(name, category, tuple(params.split()), reply, fail_open, **kw)  # type: ignore[arg-type]


_SPAM = Spam()
_YES_NO = YesNo()
_NOTIFY = Notify()
_AUTH = Auth()
_NAME = Value(key="name")
_LEGACY_RENEW = Value(types=(dict,), wrap=legacy_renew, required=True)
_LEGACY_ADMIN = Value(types=(int,), required=True)

_S, _T, _A, _P, _W = SPAM_CHECKER, THIRD_PARTY_RULES, ACCOUNT_VALIDITY, PRESENCE_ROUTER, PASSWORD_AUTH
_D, _M, _R, _U, _B, _F = ACCOUNT_DATA, MEDIA_REPOSITORY, RATELIMIT, UNSIGNED_FIELDS, BACKGROUND_UPDATES, FEDERATION
_BATCH = Value(types=(int,))
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
    _spec(
        "check_media_file_for_spam",
        _S,
        "file_wrapper file_info",
        _SPAM,
        OPEN,
        skip=("file_wrapper",),
        file_param="file_wrapper",
    ),
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
    _spec("on_new_event", _T, "event state_events", _NOTIFY, OPEN, invoked_in=EVERY),
    _spec("check_can_shutdown_room", _T, "user_id room_id", _YES_NO, OPEN),
    _spec("check_can_deactivate_user", _T, "user_id by_admin", _YES_NO, OPEN),
    _spec("on_profile_update", _T, "user_id new_profile by_admin deactivation", _NOTIFY, OPEN),
    _spec("on_user_deactivation_status_changed", _T, "user_id deactivated by_admin", _NOTIFY, OPEN),
    _spec("on_threepid_bind", _T, "user_id medium address", _NOTIFY, OPEN),
    _spec("on_add_user_third_party_identifier", _T, "user_id medium address", _NOTIFY, OPEN),
    _spec("on_remove_user_third_party_identifier", _T, "user_id medium address", _NOTIFY, OPEN),
    # account validity
    _spec("is_user_expired", _A, "user_id", Value(key="expired", types=(bool,)), OPEN, cache_key="user_id"),
    _spec("on_user_registration", _A, "user_id", _NOTIFY, OPEN),
    _spec("on_user_login", _A, "user_id auth_provider_type auth_provider_id", _NOTIFY, OPEN),
    _spec("on_legacy_send_mail", _A, "user_id", _NOTIFY, CLOSED, may_fail_open=False, only_when_served=True),
    _spec("on_legacy_renew", _A, "renewal_token", _LEGACY_RENEW, CLOSED, may_fail_open=False, only_when_served=True),
    _spec("on_legacy_admin_request", _A, "request", _LEGACY_ADMIN, CLOSED, may_fail_open=False, only_when_served=True),
    # presence router (registered as a pair)
    _spec("get_users_for_states", _P, "state_updates", UsersForStates(), OPEN),
    _spec("get_interested_users", _P, "user_id", InterestedUsers(), OPEN),
    # password auth provider (auth checkers are registered per login type, see CHECK_AUTH)
    _spec("check_3pid_auth", _W, "medium address password", _AUTH, OPEN),
    _spec("on_logged_out", _W, "user_id device_id access_token", _NOTIFY, OPEN),
    _spec("get_username_for_registration", _W, "uia_results params", _NAME, OPEN),
    _spec("get_displayname_for_registration", _W, "uia_results params", _NAME, OPEN),
    _spec("is_3pid_allowed", _W, "medium address registration", _YES_NO, CLOSED),
    # account data
    _spec("on_account_data_updated", _D, "user_id room_id account_data_type content", _NOTIFY, OPEN),
    # media repository
    _spec("get_media_config_for_user", _M, "user_id", Value(types=(dict,)), OPEN),
    _spec("is_user_allowed_to_upload_media_of_size", _M, "user_id size", _YES_NO, OPEN),
    _spec("get_media_upload_limits_for_user", _M, "user_id", Value(types=(list,), wrap=upload_limits), OPEN),
    _spec("on_media_upload_limit_exceeded", _M, "user_id limit sent_bytes attempted_bytes", _NOTIFY, OPEN),
    # ratelimit
    _spec(
        "get_ratelimit_override_for_user",
        _R,
        "user_id limiter_name",
        Value(types=(dict,), wrap=ratelimit_override),
        OPEN,
    ),
    # extra unsigned fields: every event served to a client
    _spec(
        "add_field_to_unsigned",
        _U,
        "event",
        UnsignedFields(),
        OPEN,
        keyword="add_field_to_unsigned_callback",
        only_when_served=True,
    ),
    # background-update controller (one registration: all three together)
    _spec(
        "on_update",
        _B,
        "update_name database_name one_shot",
        _BATCH,
        OPEN,
        only_when_served=True,
        synapse_setting="update_duration_ms",
        context_manager=True,
        invoked_in=BACKGROUND,
    ),
    _spec(
        "default_batch_size",
        _B,
        "update_name database_name",
        _BATCH,
        OPEN,
        only_when_served=True,
        synapse_setting="default_batch_size",
        invoked_in=BACKGROUND,
    ),
    _spec(
        "min_batch_size",
        _B,
        "update_name database_name",
        _BATCH,
        OPEN,
        only_when_served=True,
        synapse_setting="min_batch_size",
        invoked_in=BACKGROUND,
    ),
    # federation
    _spec("on_event_delivered_over_federation", _F, "delivery", _NOTIFY, OPEN),
)

#: An auth checker, registered under `auth_checkers` once per login type glia serves.
CHECK_AUTH = _spec("check_auth", _W, "username login_type login_dict", _AUTH, OPEN)

#: glia's own, not registered with Synapse: the login result for an auth checker's post-login
#: callback, sent by the callable `bind_post_login` hands Synapse. It fails closed: Synapse
#: awaits the module's callback, and a login whose callback cannot run fails as it would.
POST_LOGIN = _spec("post_login", _W, "module handle login_result", _NOTIFY, CLOSED)

BY_NAME: dict[str, CallbackSpec] = {spec.name: spec for spec in (*CALLBACKS, CHECK_AUTH, POST_LOGIN)}


def bind_post_login(result: Any, forward: Callable[[CallbackSpec, Mapping[str, Any]], Awaitable[Any]]) -> Any:
    """An auth checker's `(user_id, PostLoginHandle)` as Synapse takes it: `(user_id, callback)`,
    the callback sending Synapse's login result to glia (`post_login`), which calls the
    module's own callback where it runs. Any other result is returned as it is."""
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], PostLoginHandle)):
        return result
    user_id, held = result

    async def post_login(login_result: Mapping[str, Any]) -> None:
        await forward(POST_LOGIN, {"module": held.module, "handle": held.handle, "login_result": dict(login_result)})

    return user_id, post_login


#: Callbacks Synapse only accepts together.
PRESENCE_PAIR = ("get_users_for_states", "get_interested_users")

#: The background-update controller: `on_update` is required, the others come with it.
BACKGROUND_CONTROLLER = ("on_update", "default_batch_size", "min_batch_size")
