"""The results of `ModuleApi` calls answered by the homeserver (JSON from the bridge) as the
objects Synapse's own methods return: the host's half of `glia_synapse.module_api_calls`."""

from __future__ import annotations

from typing import Any

from glia_python_host.decode import decode_event, decode_profile, decode_state_map
from glia_synapse.module_api_calls import Call


def decode_user_info(raw: Any) -> Any:
    """A `UserInfo` from its fields."""
    if raw is None:
        return None
    import attr
    from synapse.types import UserID, UserInfo

    fields = dict(raw)
    fields["user_id"] = UserID.from_string(fields["user_id"])
    known = {a.name for a in attr.fields(UserInfo)}
    return UserInfo(**{k: v for k, v in fields.items() if k in known})


def decode(call: Call, raw: Any) -> Any:
    """A call's result as Synapse returns it."""
    if call.result == "event":
        return None if raw is None else decode_event(raw)
    if call.result == "events":
        # Synapse returns its state map's `dict_values` (not a list: no indexing), so does this.
        return {i: decode_event(e) for i, e in enumerate(raw or ())}.values()
    if call.result == "state_map":
        return decode_state_map(raw or [])
    if call.result == "user_info":
        return decode_user_info(raw)
    if call.result == "profile":
        return None if raw is None else decode_profile(raw)
    if call.result == "room_alias":
        from synapse.types import RoomAlias

        return None if raw is None else RoomAlias.from_string(raw)
    if call.result == "ip_and_agents":
        from synapse.module_api import UserIpAndAgent

        return [UserIpAndAgent(**entry) for entry in raw or ()]
    if call.result == "frozen":
        from synapse.util import frozenutils

        return frozenutils.freeze(raw)
    if call.result == "tuple":
        return None if raw is None else tuple(raw)
    return raw
