"""Synapse's callback arguments as the JSON glia expects (bus-schema/schema/glia-bus-v1.json).

Every callback argument is converted by the encoder registered for its *name* in
`ENCODERS`: Synapse uses each argument name with one type throughout its module API
(`event` is always an `EventBase`, `state_events` always a `StateMap[EventBase]`, ...).
Arguments without an encoder are plain JSON values and go through `plain`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

JsonDict = dict[str, Any]

#: Keys the bridge adds to an event's PDU dict when Synapse's dict lacks them (the event id
#: of room versions 3 and later, the room id of a room version 12 create event). They are
#: removed again from a replacement event handed back to Synapse.
ADDED_EVENT_KEYS = ("event_id", "room_id")


#: Types `plain` returns as they are, tested by identity first: an event's dict is mostly
#: these, and the abstract-class checks below cost several times more.
_SCALARS = frozenset((str, int, float, bool, type(None)))


def plain(value: Any) -> Any:
    """A JSON-ready copy of `value`: mappings become dicts, sets, tuples and other
    iterables become lists, everything else is returned as is."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [plain(v) for v in value]
    if kind is dict or isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if isinstance(value, Iterable):
        return [plain(v) for v in value]
    return value


#: Keys that are not part of the PDU: the event's room version and Synapse's internal metadata
#: (`outlier`, `soft_failed`, `txn_id`, ...), sent so that a Python host can rebuild Synapse's
#: own event object (`make_event_from_dict`). Never part of a replacement event.
EVENT_META_KEYS = ("room_version", "internal_metadata")

#: Internal metadata Synapse keeps outside the metadata's dict (`get_dict()` leaves them out:
#: they live in columns of their own) and sets on the event object after building it.
METADATA_ATTRIBUTES = ("outlier", "stream_ordering", "instance_name", "redacted_by")


def encode_event(event: Any, copy: Callable[[Any], Any] = plain) -> JsonDict:
    """An `EventBase` as its PDU dict (`get_dict()`, through `copy`), with `event_id` and
    `room_id` filled in when the dict lacks them, and its room version and internal metadata
    beside the PDU's own keys (`EVENT_META_KEYS`).

    `copy` makes the PDU JSON-ready; the embedded placement, which reads Synapse's immutable
    mappings as they are, passes `dict` (a shallow copy, a fraction of `plain`'s cost)."""
    pdu: JsonDict = copy(event.get_dict())
    for key in ADDED_EVENT_KEYS:
        if pdu.get(key) is None:
            value = getattr(event, key, None)
            if value is not None:
                pdu[key] = value
    room_version = getattr(getattr(event, "room_version", None), "identifier", None)
    if isinstance(room_version, str):
        pdu["room_version"] = room_version
    metadata = getattr(event, "internal_metadata", None)
    if metadata is not None and hasattr(metadata, "get_dict"):
        flags = plain(metadata.get_dict())
        for name in METADATA_ATTRIBUTES:
            value = getattr(metadata, name, None)
            if value:
                flags[name] = value
        if flags:
            pdu["internal_metadata"] = flags
    return pdu


def encode_state_map(state: Mapping[Any, Any] | None) -> list[JsonDict]:
    """A `StateMap[EventBase]` as the list of its events (each event's own `type` and
    `state_key` are its key)."""
    return [encode_event(event) for event in (state or {}).values()]


def encode_room_alias(alias: Any) -> str:
    """A `RoomAlias` as `#localpart:domain`."""
    return alias if isinstance(alias, str) else alias.to_string()


def app_service_id(requester: Any) -> str | None:
    """The id of the application service acting, if any: Synapse's (Rust) `Requester` keeps it
    as `app_service_id`; an older Synapse's held the `ApplicationService` itself."""
    found = getattr(requester, "app_service_id", None)
    if found is None:
        found = getattr(getattr(requester, "app_service", None), "id", None)
    return found if isinstance(found, str) else None


def encode_requester(requester: Any) -> JsonDict:
    """A `Requester` as glia's `Requester` object."""
    return {
        "user_id": requester.user.to_string(),
        "access_token_id": requester.access_token_id,
        "is_guest": bool(requester.is_guest),
        "scope": sorted(requester.scope or ()),
        "shadow_banned": bool(requester.shadow_banned),
        "device_id": requester.device_id,
        "app_service_id": app_service_id(requester),
        "authenticated_entity": requester.authenticated_entity,
    }


def encode_file_info(info: Any) -> JsonDict:
    """A media `FileInfo` (with its `ThumbnailInfo`, if any)."""
    thumbnail = info.thumbnail
    return {
        "server_name": info.server_name,
        "file_id": info.file_id,
        "url_cache": bool(info.url_cache),
        "thumbnail": None
        if thumbnail is None
        else {
            "width": thumbnail.width,
            "height": thumbnail.height,
            "method": thumbnail.method,
            "type": thumbnail.type,
            "length": thumbnail.length,
        },
    }


def encode_request_info(pairs: Iterable[tuple[str | None, str]] | None) -> list[JsonDict]:
    """`(user_agent, ip)` pairs as `{"user_agent", "ip"}` objects."""
    return [{"user_agent": agent, "ip": ip} for agent, ip in (pairs or ())]


def encode_presence_state(state: Any) -> JsonDict:
    """A `UserPresenceState` as a dict (its `as_dict()`)."""
    encoded: JsonDict = plain(state.as_dict())
    return encoded


def encode_presence_states(states: Iterable[Any]) -> list[JsonDict]:
    """Presence states as a list of dicts."""
    return [encode_presence_state(state) for state in states]


def encode_profile(profile: Any) -> JsonDict:
    """A `ProfileInfo` (attributes) or a profile dict as `{"display_name", "avatar_url"}`."""
    if isinstance(profile, Mapping):
        return {"display_name": profile.get("display_name"), "avatar_url": profile.get("avatar_url")}
    return {"display_name": profile.display_name, "avatar_url": profile.avatar_url}


def encode_upload_limit(limit: Any) -> JsonDict:
    """A `MediaUploadLimit` as a dict."""
    return {
        "max_bytes": limit.max_bytes,
        "time_period_ms": limit.time_period_ms,
        "info_uri": getattr(limit, "info_uri", None),
        "can_upgrade": bool(getattr(limit, "can_upgrade", False)),
    }


def encode_delivery(delivery: Any) -> JsonDict:
    """A `FederationEventDeliveryEvent`: the destination, the events, and how they went
    (the method's value, e.g. `/send`)."""
    method = delivery.method
    return {
        "server_name": delivery.server_name,
        "events": [encode_event(event) for event in delivery.events],
        "method": str(getattr(method, "value", method)),
    }


def encode_legacy_admin_request(request: Any) -> JsonDict:
    """The JSON body of the request to the legacy account-validity admin endpoint."""
    content = request.content
    content.seek(0)
    raw = content.read()
    content.seek(0)
    body = json.loads(raw or b"{}")
    if not isinstance(body, dict):
        raise ValueError("the account validity admin request body is not a JSON object")
    return body


#: Encoders by Synapse argument name; everything else goes through `plain`.
ENCODERS: dict[str, Callable[[Any], Any]] = {
    "event": encode_event,
    "state_events": encode_state_map,
    "room_alias": encode_room_alias,
    "requester": encode_requester,
    "file_info": encode_file_info,
    "request_info": encode_request_info,
    "state_updates": encode_presence_states,
    "new_profile": encode_profile,
    "request": encode_legacy_admin_request,
    "limit": encode_upload_limit,
    "delivery": encode_delivery,
}


def encode_args(
    names: Iterable[str],
    args: Mapping[str, Any],
    skip: Iterable[str] = (),
    encoders: Mapping[str, Callable[[Any], Any]] = ENCODERS,
) -> JsonDict:
    """The request body for glia: each argument in `names` (except `skip`) through its
    encoder in `encoders` (`plain` for the others)."""
    skipped = set(skip)
    return {name: encoders.get(name, plain)(args[name]) for name in names if name not in skipped and name in args}


class _Enough(Exception):
    """Stops reading a media file once the bytes to send are read."""


async def read_media_file(wrapper: Any, limit: int) -> JsonDict:
    """The first `limit` bytes of the file a `ReadableFileWrapper` reads, as glia's
    `MediaFile` (base64 content, the whole file's length, whether it was cut)."""
    length = os.path.getsize(wrapper.path)
    chunks: list[bytes] = []
    taken = 0

    def take(chunk: bytes) -> None:
        nonlocal taken
        chunks.append(chunk[: limit - taken])
        taken += len(chunks[-1])
        if taken >= limit:
            raise _Enough

    if limit > 0:
        with contextlib.suppress(_Enough):
            await wrapper.write_chunks_to(take)
    content = b"".join(chunks)
    return {"content": base64.b64encode(content).decode("ascii"), "length": length, "truncated": len(content) < length}
