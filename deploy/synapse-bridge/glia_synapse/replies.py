"""glia's replies as the values Synapse expects from each kind of callback.

A *reply kind* turns glia's JSON reply into what Synapse's callback contract asks for
(`NOT_SPAM`, `(Codes, dict)`, `(bool, replacement)`, a `RegistrationBehaviour`, ...) and
knows the callback's "no opinion" value, used when the callback fails open.

`{"decision": "error"}` replies are handled here too, once for every kind (`check_error`):
glia decided that the request fails, so the bridge raises, as a module raises inside
Synapse: a module's own `SynapseError` (`"synapse_error": true`) as is, whatever its status,
with its extra fields; any other failure as a plain exception, which Synapse answers as it
answers any module exception. Only a reply that is not a reply at all is a `GliaFailure`,
resolved by the callback's failure mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from synapse.api.presence import UserPresenceState
from synapse.module_api import NOT_SPAM, PRESENCE_ALL_USERS, MediaUploadLimit, RatelimitOverride
from synapse.module_api.errors import Codes, SynapseError
from synapse.spam_checker_api import RegistrationBehaviour

from glia_synapse.convert import ADDED_EVENT_KEYS, EVENT_META_KEYS, encode_event, encode_presence_state
from glia_synapse.errors import GliaFailure, GliaModuleFailed

JsonDict = dict[str, Any]


@lru_cache(maxsize=256)
def errcode(code: str) -> Codes:
    """`code` as a `synapse.api.errors.Codes` value.

    Synapse accepts a spam checker's deny only as a `Codes` instance (or a `(Codes, dict)`
    pair): a plain string is "an invalid value" for the `user_may_*` checks (logged, then
    `M_FORBIDDEN`) and an error *message* for `check_event_for_spam`. Known codes are the enum's
    own members; any other errcode (e.g. a module's `ORG_EXAMPLE_SPAM`) becomes a `Codes`
    instance carrying that string, which Synapse handles like a member and serialises as the
    string itself.
    """
    try:
        return Codes(code)
    except ValueError:
        foreign = str.__new__(Codes, code)
        foreign._name_ = code
        foreign._value_ = code
        return foreign


def check_error(reply: Any) -> JsonDict:
    """`reply` if it is a JSON object that is not `{"decision": "error"}`.

    For an error reply, raises what the module raised: its `SynapseError` (any status from
    400 to 599, with its extra fields) when `synapse_error` is set, else `GliaModuleFailed`.
    Raises `GliaFailure` for a reply that is not an object, or an error reply that cannot be
    read.
    """
    if not isinstance(reply, dict):
        raise GliaFailure(f"glia answered {type(reply).__name__}, not a JSON object", kind="bad_reply")
    if reply.get("decision") != "error":
        return reply
    status, fields = reply.get("status"), reply.get("fields", {})
    if reply.get("synapse_error") is True:
        if not (isinstance(status, int) and 400 <= status <= 599) or not isinstance(fields, dict):
            raise GliaFailure(f"glia answered an unreadable error: {reply!r}", kind="bad_reply")
        raise SynapseError(
            status, str(reply.get("error", "")), errcode(str(reply.get("errcode") or Codes.UNKNOWN)), dict(fields)
        )
    # glia's message already names the module and what it did ("module m failed: ...").
    raise GliaModuleFailed(str(reply.get("error") or "a module failed"))


def decision(reply: JsonDict) -> str:
    """The `decision` of a yes/no reply: `allow` or `deny`."""
    value = reply.get("decision")
    if value not in ("allow", "deny"):
        raise GliaFailure(f"glia answered an unknown decision {value!r}", kind="bad_reply")
    return str(value)


def field(reply: JsonDict, name: str, *types: type) -> Any:
    """`reply[name]`, checked to be one of `types` (`type(None)` allows null or absent)."""
    value = reply.get(name)
    if not isinstance(value, types):
        raise GliaFailure(f"glia's reply has a bad `{name}`: {value!r}", kind="bad_reply")
    return value


class ReplyKind:
    """How one kind of callback reads glia's reply."""

    #: The value returned to Synapse when the callback fails open ("no opinion").
    open_value: Any = None

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        """The value for Synapse, from an already error-checked reply and the call's
        Synapse arguments (by name)."""
        raise NotImplementedError

    def fail_open(self) -> Any:
        """The "no opinion" value (a fresh copy where it is mutable)."""
        return self.open_value


@dataclass(frozen=True)
class Spam(ReplyKind):
    """Spam checks: allow is `NOT_SPAM` (the very object: Synapse compares by identity);
    deny is `(Codes(errcode), fields)`, or the bare code where Synapse accepts only that
    (`user_may_send_state_event`), or the module's own message as a plain string (the
    deprecated answer of `check_event_for_spam`, whose string Synapse shows the client)."""

    with_fields: bool = True
    open_value: Any = NOT_SPAM

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        if decision(reply) == "allow":
            return NOT_SPAM
        if reply.get("module_message") is True:
            return str(field(reply, "error", str))
        code = errcode(str(reply.get("errcode") or Codes.FORBIDDEN))
        if not self.with_fields:
            return code
        fields = reply.get("fields")
        return code, dict(fields) if isinstance(fields, dict) else {}


@dataclass(frozen=True)
class Truthy(ReplyKind):
    """`should_drop_federated_event`, `check_username_for_spam`: deny is `True` (drop the
    event, hide the user), allow `False`."""

    open_value: Any = False

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        return decision(reply) == "deny"


@dataclass(frozen=True)
class YesNo(ReplyKind):
    """Third-party rules checks and `is_3pid_allowed`: allow is `True`, deny `False`."""

    open_value: Any = True

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        return decision(reply) == "allow"


@dataclass(frozen=True)
class EventAllowed(ReplyKind):
    """`check_event_allowed`: `(True, replacement | None)` or `(False, None)`."""

    open_value: Any = (True, None)

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        if decision(reply) == "deny":
            return False, None
        replacement = field(reply, "replacement", dict, type(None))
        if replacement is None:
            return True, None
        return True, strip_added_keys(replacement, args["event"])


def strip_added_keys(replacement: JsonDict, event: Any) -> JsonDict:
    """The replacement without the keys the bridge added to the original event's dict (a
    replacement carrying, say, the `room_id` of a room version 12 create event would be
    refused by Synapse as "changing" it), nor the room version and internal metadata sent
    beside the PDU."""
    original = event.get_dict()
    added = encode_event(event)
    return {
        key: value
        for key, value in replacement.items()
        if key not in EVENT_META_KEYS
        and not (key in ADDED_EVENT_KEYS and key not in original and value == added.get(key))
    }


@dataclass(frozen=True)
class CreateRoom(ReplyKind):
    """`on_create_room`: allow applies glia's edits to Synapse's live `request_content`
    dict (Synapse uses the edited dict); deny raises the `SynapseError` Synapse shows."""

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        if decision(reply) == "deny":
            fields = reply.get("fields")
            raise SynapseError(
                int(reply.get("status") or 403),
                str(reply.get("error", "Room creation forbidden with these parameters")),
                errcode(str(reply.get("errcode") or Codes.UNKNOWN)),
                dict(fields) if isinstance(fields, dict) else None,
            )
        edited = field(reply, "request_content", dict, type(None))
        live = args["request_content"]
        if edited is not None and edited != live:
            live.clear()
            live.update(edited)
        return None


@dataclass(frozen=True)
class Notify(ReplyKind):
    """Notifications (`on_new_event`, `on_user_registration`, ...): nothing to return."""

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        return None


@dataclass(frozen=True)
class Registration(ReplyKind):
    """`check_registration_for_spam`: a `RegistrationBehaviour`."""

    open_value: Any = RegistrationBehaviour.ALLOW

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        try:
            return RegistrationBehaviour(field(reply, "behaviour", str))
        except ValueError as e:
            raise GliaFailure(f"glia answered an unknown behaviour: {e}", kind="bad_reply") from e


@dataclass(frozen=True)
class Value(ReplyKind):
    """A reply carrying one value under `key` (`expired`, `user_id`, `name`, ...), `None`
    meaning "no opinion"; `wrap` turns a non-null value into what Synapse expects."""

    key: str = "value"
    types: tuple[type, ...] = (str,)
    wrap: Any = None
    required: bool = False

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        value = field(reply, self.key, *self.types, type(None))
        if value is None:
            if self.required:
                raise GliaFailure(f"glia answered no `{self.key}` (no module holds it)", kind="bad_reply")
            return None
        return self.wrap(value) if self.wrap else value


@dataclass(frozen=True)
class UnsignedFields(ReplyKind):
    """`add_field_to_unsigned_callback`: the fields glia's modules add (a dict)."""

    def fail_open(self) -> Any:
        return {}

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        return dict(field(reply, "fields", dict))


def upload_limits(value: list[Any]) -> list[MediaUploadLimit]:
    """`get_media_upload_limits_for_user`'s list of `MediaUploadLimit`s (Synapse sorts it)."""
    try:
        return [
            MediaUploadLimit(
                max_bytes=int(limit["max_bytes"]),
                time_period_ms=int(limit["time_period_ms"]),
                info_uri=limit.get("info_uri"),
                can_upgrade=bool(limit.get("can_upgrade", False)),
            )
            for limit in value
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise GliaFailure(f"glia answered an unreadable upload limit: {e!r}", kind="bad_reply") from e


def ratelimit_override(value: JsonDict) -> RatelimitOverride:
    """`get_ratelimit_override_for_user`'s `RatelimitOverride`."""
    try:
        return RatelimitOverride(per_second=float(value["per_second"]), burst_count=int(value["burst_count"]))
    except (KeyError, TypeError, ValueError) as e:
        raise GliaFailure(f"glia answered an unreadable ratelimit override: {e!r}", kind="bad_reply") from e


@dataclass(frozen=True)
class PostLoginHandle:
    """The post-login callback a module's auth checker returned, held in glia under `handle`
    for `module`; `catalogue.bind_post_login` makes it the callable Synapse awaits."""

    module: str
    handle: str


@dataclass(frozen=True)
class Auth(ReplyKind):
    """`check_auth` / `check_3pid_auth`: `(user_id, post-login callback)`, the callback a
    `PostLoginHandle` when the module returned one (else `None`); `None` for "not me"."""

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        user_id = field(reply, "user_id", str, type(None))
        if user_id is None:
            return None
        handle = field(reply, "post_login", str, type(None))
        module = field(reply, "module", str, type(None))
        if handle is None or module is None:
            return user_id, None
        return user_id, PostLoginHandle(module, handle)


def legacy_renew(value: JsonDict) -> tuple[bool, bool, int]:
    """`on_legacy_renew`'s `(valid, stale, expiry_ts)`."""
    return bool(value["valid"]), bool(value["stale"]), int(value["expiry_ts"])


@dataclass(frozen=True)
class UsersForStates(ReplyKind):
    """`get_users_for_states`: `{user_id: set(UserPresenceState)}`, reusing Synapse's own
    state objects where glia returns one of them unchanged."""

    def fail_open(self) -> Any:
        return {}

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        users = field(reply, "users", dict)
        originals = {_presence_key(encode_presence_state(s)): s for s in args.get("state_updates", ())}
        return {
            user_id: {originals.get(_presence_key(s)) or presence_state(s) for s in states}
            for user_id, states in users.items()
        }


def _presence_key(state: JsonDict) -> tuple[Any, ...]:
    return tuple(sorted((k, v) for k, v in state.items()))


def presence_state(state: JsonDict) -> UserPresenceState:
    """A `UserPresenceState` from glia's JSON (its defaults for missing fields)."""
    return UserPresenceState(
        user_id=state["user_id"],
        state=state["state"],
        last_active_ts=state.get("last_active_ts", 0),
        last_federation_update_ts=state.get("last_federation_update_ts", 0),
        last_user_sync_ts=state.get("last_user_sync_ts", 0),
        status_msg=state.get("status_msg"),
        currently_active=state.get("currently_active", False),
    )


@dataclass(frozen=True)
class InterestedUsers(ReplyKind):
    """`get_interested_users`: a set of user ids, or `PRESENCE_ALL_USERS`."""

    def fail_open(self) -> Any:
        return set()

    def decode(self, reply: JsonDict, args: Mapping[str, Any]) -> Any:
        users = field(reply, "users", list, str)
        if users == PRESENCE_ALL_USERS:
            return PRESENCE_ALL_USERS
        if isinstance(users, str):
            raise GliaFailure(f"glia answered users {users!r}", kind="bad_reply")
        return set(users)
