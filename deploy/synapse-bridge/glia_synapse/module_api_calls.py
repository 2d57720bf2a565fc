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
- `room_alias`: a `RoomAlias` as `#alias:server`, or None.
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
    "public_room_list_manager.room_is_in_public_room_list": Call("plain"),
    "account_data_manager.get_global": Call("plain"),
    "account_data_manager.put_global": Call("plain"),
}


def decode_pairs(value: Any) -> list[tuple[str, str | None]] | None:
    """A list of `[type, state_key]` as Synapse's list of tuples."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise ValueError("expected a list of [type, state_key] pairs")
    return [(str(t), None if k is None else str(k)) for t, k in value]


def encode_arguments(call: Call, args: Mapping[str, Any]) -> dict[str, Any]:
    """A call's arguments as JSON (pairs become lists)."""
    return {name: plain(value) for name, value in args.items()}


def decode_arguments(call: Call, args: Mapping[str, Any]) -> dict[str, Any]:
    """A call's JSON arguments as the `ModuleApi` method takes them."""
    return {name: decode_pairs(value) if name in call.pairs else value for name, value in args.items()}


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
    return plain(value)


def _iterate(value: Iterable[Any] | None) -> Iterable[Any]:
    return () if value is None else value
