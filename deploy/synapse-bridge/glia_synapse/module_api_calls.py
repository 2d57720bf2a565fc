"""The `ModuleApi` calls the bridge serves to glia's Python hosts, and how each one's
arguments and result cross the channel.

A module hosted out of process still asks its homeserver things (`get_room_state`,
`check_user_exists`, `update_room_membership`, ...). The bridge holds Synapse's real
`ModuleApi`, so it answers those calls itself (`module_api_server`): the answers are Synapse's
own. Both ends use this table: the host to know which calls exist and how to rebuild a
result, the bridge to know which calls it may make and how to encode what they return.

Arguments go by name as JSON. Result kinds:

- `plain`: JSON as is (`None`, strings, numbers, lists, dicts);
- `tuple`: a list on the wire, a tuple in Python (`register`, `lookup_room_alias`, ...);
- `event`: an `EventBase`, encoded as every callback's event is (`convert.encode_event`);
- `events`: a list of those;
- `state_map`: a `StateMap[EventBase]`, as the list of its events;
- `user_info`: a `UserInfo` (attrs fields; `user_id` as a string), or None;
- `profile`: a `ProfileInfo`;
- `room_alias`: a `RoomAlias` as `#alias:server`, or None;
- `ip_and_agents`: a list of `UserIpAndAgent` (attrs fields);
- `frozen`: JSON, frozen on the host as Synapse freezes it (`get_global`'s account data).

An argument that is one of Synapse's identifiers (`UserID`, `RoomID`, ...: `set_displayname`
takes a `UserID`, `get_canonical_room_alias` a `RoomID`) crosses as `{"glia_id": class,
"id": string}` and is rebuilt as that class; a string stays a string, as a module passed it.

An exception other than a `SynapseError` (`RuntimeError`, `ValueError`, `TypeError`,
`InvalidRuleException`, ...) crosses by its class name (`glia_exception`) and is raised
again in the module when it is a builtin or one of `RAISED_AGAIN`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from glia_synapse.convert import encode_event, encode_profile, encode_state_map, plain

#: The path under the channel's URL where the bridge answers `POST <path><call>`.
CALL_PATH = "/_glia/v1/module_api/"

#: Not a `ModuleApi` method: the bridge's own call, `{"event_id", "soft_failed"}`, setting
#: `internal_metadata.soft_failed` on Synapse's live event of a callback in flight, which a
#: hosted module changed on its copy (`events_in_flight`). Its result is how many events with
#: that id the bridge held (0: none, e.g. the callback runs in another Synapse process).
SET_SOFT_FAILED = "glia.set_soft_failed"


@dataclass(frozen=True)
class Call:
    """One `ModuleApi` call the bridge serves."""

    #: How the result crosses the channel (see the module's docstring).
    result: str
    #: Arguments that are lists of `(type, state_key)` pairs (tuples in Synapse).
    pairs: tuple[str, ...] = ()


#: Every call, by its dotted name on the `ModuleApi` (`public_room_list_manager.x` is a method
#: of that attribute).
CALLS: dict[str, Call] = {
    "get_room_state": Call("state_map", pairs=("event_filter",)),
    "get_state_events_in_room": Call("events", pairs=("types",)),
    "check_user_exists": Call("plain"),
    "get_userinfo_by_id": Call("user_info"),
    "get_profile_for_user": Call("profile"),
    "is_user_admin": Call("plain"),
    "set_user_admin": Call("plain"),
    "get_threepids_for_user": Call("plain"),
    "update_room_membership": Call("event"),
    "create_and_send_event_into_room": Call("event"),
    "create_room": Call("tuple"),
    "lookup_room_alias": Call("tuple"),
    "get_canonical_room_alias": Call("room_alias"),
    "register": Call("tuple"),
    "register_user": Call("plain"),
    "register_device": Call("tuple"),
    "record_user_external_id": Call("plain"),
    "invalidate_access_token": Call("plain"),
    "get_monthly_active_users_by_service": Call("plain"),
    "create_login_token": Call("plain"),
    "send_local_online_presence_to": Call("plain"),
    "set_presence_for_users": Call("plain"),
    "send_http_push_notification": Call("plain"),
    "send_mail": Call("plain"),
    "get_user_ip_and_agents": Call("ip_and_agents"),
    "check_username": Call("plain"),
    "store_remote_3pid_association": Call("plain"),
    "set_push_rule_action": Call("plain"),
    "delete_room": Call("plain"),
    "set_displayname": Call("plain"),
    "public_room_list_manager.room_is_in_public_room_list": Call("plain"),
    "public_room_list_manager.add_room_to_public_room_list": Call("plain"),
    "public_room_list_manager.remove_room_from_public_room_list": Call("plain"),
    "account_data_manager.get_global": Call("frozen"),
    "account_data_manager.put_global": Call("plain"),
}


#: Synapse's identifier classes an argument may be (`synapse.types`), by name.
IDENTIFIERS = ("UserID", "RoomID", "RoomAlias", "EventID")

#: Exceptions a call may raise that the host raises again in the module, by class name, besides
#: Python's builtin exceptions (`RuntimeError`, `ValueError`, `AttributeError`, ...): the stable
#: module API's own errors and those the `ModuleApi`'s methods document raising, with where
#: Synapse defines them. Any other becomes the host's `ChannelError`.
RAISED_AGAIN = {
    "InvalidRuleException": "synapse.module_api.errors",
    "RuleNotFoundException": "synapse.module_api.errors",
    "RedirectException": "synapse.module_api.errors",
    "InvalidClientCredentialsError": "synapse.module_api.errors",
    "ShadowBanError": "synapse.api.errors",
    "ExternalIDReuseException": "synapse.storage.databases.main.registration",
}


def encode_argument(value: Any) -> Any:
    """One argument as JSON: a Synapse identifier as `{"glia_id", "id"}`, the rest `plain`."""
    kind = type(value).__name__
    if kind in IDENTIFIERS and hasattr(value, "to_string"):
        return {"glia_id": kind, "id": value.to_string()}
    return plain(value)


def decode_argument(value: Any) -> Any:
    """One JSON argument as the module passed it (identifiers rebuilt)."""
    if isinstance(value, dict) and set(value) == {"glia_id", "id"} and value["glia_id"] in IDENTIFIERS:
        import synapse.types

        return getattr(synapse.types, value["glia_id"]).from_string(value["id"])
    return value


def exception_class(name: str) -> type[Exception] | None:
    """The class of an exception the host raises again (a builtin, or one of `RAISED_AGAIN`)."""
    import builtins
    import importlib

    where = RAISED_AGAIN.get(name)
    found = getattr(importlib.import_module(where), name, None) if where else getattr(builtins, name, None)
    return found if isinstance(found, type) and issubclass(found, Exception) else None


def decode_pairs(value: Any) -> list[tuple[str, str | None]] | None:
    """A list of `[type, state_key]` as Synapse's list of tuples."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise ValueError("expected a list of [type, state_key] pairs")
    return [(str(t), None if k is None else str(k)) for t, k in value]


def encode_arguments(call: Call, args: Mapping[str, Any]) -> dict[str, Any]:
    """A call's arguments as JSON (pairs become lists)."""
    return {name: encode_argument(value) for name, value in args.items()}


def decode_arguments(call: Call, args: Mapping[str, Any]) -> dict[str, Any]:
    """A call's JSON arguments as the `ModuleApi` method takes them."""
    return {name: decode_pairs(value) if name in call.pairs else decode_argument(value) for name, value in args.items()}


def encode_user_info(info: Any) -> Any:
    """A `UserInfo` as a dict of its attrs fields (`user_id` as a string)."""
    if info is None:
        return None
    import attr

    fields = attr.asdict(info, recurse=False)
    fields["user_id"] = info.user_id.to_string()
    return plain(fields)


def encode_result(call: Call, value: Any) -> Any:
    """What a `ModuleApi` call returned, as JSON for the channel."""
    if call.result == "event":
        return None if value is None else encode_event(value)
    if call.result == "events":
        return [encode_event(event) for event in _iterate(value)]
    if call.result == "state_map":
        return encode_state_map(value)
    if call.result == "user_info":
        return encode_user_info(value)
    if call.result == "profile":
        return None if value is None else encode_profile(value)
    if call.result == "room_alias":
        return None if value is None else value.to_string()
    if call.result == "ip_and_agents":
        import attr

        return [plain(attr.asdict(entry)) for entry in _iterate(value)]
    return plain(value)


def _iterate(value: Iterable[Any] | None) -> Iterable[Any]:
    return () if value is None else value
