"""glia's JSON as the objects Synapse gives a module: the inverse of the bridge's
`glia_synapse.convert`.

Events become Synapse's own (Rust) event objects, built as Synapse builds them
(`make_event_from_dict` with the event's room version and internal metadata); state maps
become dicts keyed by `(type, state_key)`; a requester a `Requester`, a room alias a
`RoomAlias`, presence states `UserPresenceState`s, a media file a `ReadableFileWrapper` over a
temporary file, and so on. Every argument is decoded by the decoder registered for its *name*,
as the bridge encodes it (`DECODERS`); the rest is plain JSON.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from glia_synapse.convert import EVENT_META_KEYS, METADATA_ATTRIBUTES

JsonDict = dict[str, Any]

#: The room version assumed for an event glia sends without one (a caller other than the
#: bridge): Synapse's default for new rooms.
DEFAULT_ROOM_VERSION = "10"

#: PDU keys Synapse's event objects require, with the value used when glia's event lacks
#: them (a caller other than the bridge may send only what a module reads).
_PDU_DEFAULTS: dict[str, Any] = {
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 0,
    "hashes": {},
    "signatures": {},
    "origin_server_ts": 0,
    "unsigned": {},
}


class MalformedArguments(ValueError):
    """glia's arguments cannot be what Synapse would give the module."""


def decode_event(raw: Any) -> Any:
    """An event (glia's PDU dict, with `room_version` and `internal_metadata` beside it) as
    Synapse's event object.

    The event id of room versions 3 and later is the hash of the event, not a field: Synapse
    computes it again, and for the complete PDU the bridge sends it is the same id.
    """
    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS, EventFormatVersions
    from synapse.events import make_event_from_dict

    if not isinstance(raw, Mapping):
        raise MalformedArguments(f"an event must be an object, not {type(raw).__name__}")
    pdu = {key: value for key, value in raw.items() if key not in EVENT_META_KEYS}
    version_id = raw.get("room_version") or DEFAULT_ROOM_VERSION
    room_version = KNOWN_ROOM_VERSIONS.get(version_id)
    if room_version is None:
        raise MalformedArguments(f"unknown room version {version_id!r}")
    metadata = raw.get("internal_metadata") or {}
    if not isinstance(metadata, Mapping):
        raise MalformedArguments("an event's internal_metadata must be an object")
    for key, default in _PDU_DEFAULTS.items():
        pdu.setdefault(key, default)
    if room_version.event_format != EventFormatVersions.ROOM_V1_V2:
        pdu.pop("event_id", None)
    if room_version.msc4291_room_ids_as_hashes and pdu.get("type") == "m.room.create":
        pdu.pop("room_id", None)  # derived from the create event's id in these versions
    try:
        event = make_event_from_dict(pdu, room_version, dict(metadata))
    except Exception as e:
        raise MalformedArguments(f"not an event Synapse can build: {e}") from e
    for name in METADATA_ATTRIBUTES:  # set after building, as Synapse sets them
        if metadata.get(name) is not None:
            setattr(event.internal_metadata, name, metadata[name])
    return event


def decode_state_map(raw: Any) -> dict[tuple[str, str], Any]:
    """A list of state events as a `StateMap`: `{(type, state_key): event}`."""
    if not isinstance(raw, list):
        raise MalformedArguments("state_events must be a list of events")
    state: dict[tuple[str, str], Any] = {}
    for item in raw:
        event = decode_event(item)
        state[(event.type, event.state_key if event.is_state() else "")] = event
    return state


def decode_requester(raw: Any) -> Any:
    """A `Requester`, with the application service's id (`app_service_id`) when the request
    came from one. Synapse's own `Requester` (a Rust type in Synapse 1.163) keeps only that id,
    so the host's is the same; an older Synapse's Python `Requester` held the application
    service object itself, which cannot be rebuilt out of process (its `app_service` is then
    None)."""
    from synapse.types import Requester, create_requester

    if not isinstance(raw, Mapping) or not isinstance(raw.get("user_id"), str):
        raise MalformedArguments("a requester needs a user_id")
    requester = create_requester(
        raw["user_id"],
        access_token_id=raw.get("access_token_id"),
        is_guest=bool(raw.get("is_guest", False)),
        scope=tuple(raw.get("scope") or ()),
        shadow_banned=bool(raw.get("shadow_banned", False)),
        device_id=raw.get("device_id"),
        authenticated_entity=raw.get("authenticated_entity"),
    )
    app_service_id = raw.get("app_service_id")
    if not isinstance(app_service_id, str) or not hasattr(Requester, "app_service_id"):
        return requester
    return Requester(
        requester.user,
        requester.access_token_id,
        requester.is_guest,
        requester.scope,
        requester.shadow_banned,
        requester.device_id,
        app_service_id,
        requester.authenticated_entity,
    )


def decode_room_alias(raw: Any) -> Any:
    """`#alias:server` as a `RoomAlias`."""
    from synapse.types import RoomAlias

    return RoomAlias.from_string(str(raw))


def decode_request_info(raw: Any) -> list[tuple[str | None, str]]:
    """`[{"user_agent", "ip"}]` as Synapse's `(user_agent, ip)` pairs."""
    return [(item.get("user_agent"), item.get("ip")) for item in raw or () if isinstance(item, Mapping)]


def decode_presence_states(raw: Any) -> list[Any]:
    """Presence states as `UserPresenceState`s."""
    from glia_synapse.replies import presence_state

    return [presence_state(s) for s in raw or ()]


def decode_profile(raw: Any) -> Any:
    """A `ProfileInfo`."""
    from synapse.module_api import ProfileInfo

    raw = raw or {}
    return ProfileInfo(avatar_url=raw.get("avatar_url"), display_name=raw.get("display_name"))


def decode_file_info(raw: Any) -> Any:
    """A media `FileInfo`, with its `ThumbnailInfo`."""
    from synapse.media._base import FileInfo, ThumbnailInfo

    thumbnail = raw.get("thumbnail")
    return FileInfo(
        server_name=raw.get("server_name"),
        file_id=raw["file_id"],
        url_cache=bool(raw.get("url_cache", False)),
        thumbnail=None if thumbnail is None else ThumbnailInfo(**thumbnail),
    )


def decode_upload_limit(raw: Any) -> Any:
    """A `MediaUploadLimit`."""
    from synapse.module_api import MediaUploadLimit

    return MediaUploadLimit(
        max_bytes=raw["max_bytes"],
        time_period_ms=raw["time_period_ms"],
        info_uri=raw.get("info_uri"),
        can_upgrade=bool(raw.get("can_upgrade", False)),
    )


def decode_delivery(raw: Any) -> Any:
    """A `FederationEventDeliveryEvent`."""
    from synapse.module_api.callbacks.federation import FederatedEventDeliveryMethod, FederationEventDeliveryEvent

    return FederationEventDeliveryEvent(
        server_name=raw["server_name"],
        events=[decode_event(e) for e in raw.get("events") or ()],
        method=FederatedEventDeliveryMethod(raw["method"]),
    )


#: Decoders by Synapse argument name; everything else is plain JSON.
DECODERS: dict[str, Callable[[Any], Any]] = {
    "event": decode_event,
    "state_events": decode_state_map,
    "room_alias": decode_room_alias,
    "requester": decode_requester,
    "file_info": decode_file_info,
    "request_info": decode_request_info,
    "state_updates": decode_presence_states,
    "new_profile": decode_profile,
    "limit": decode_upload_limit,
    "delivery": decode_delivery,
}


class MediaFile:
    """`check_media_file_for_spam`'s `file_wrapper`: Synapse's own `ReadableFileWrapper`
    over a temporary file holding the bytes glia sent (removed after the call)."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        import base64

        from synapse.media.media_storage import ReadableFileWrapper
        from synapse.util.clock import Clock
        from twisted.internet import reactor

        content = base64.b64decode(raw.get("content") or "")
        handle, self.path = tempfile.mkstemp(prefix="glia-media-")
        with os.fdopen(handle, "wb") as f:
            f.write(content)
        self.wrapper = ReadableFileWrapper(Clock(reactor, "glia-python-host"), self.path)  # type: ignore[arg-type]

    def close(self) -> None:
        """Removes the temporary file."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def decode_args(params: Iterable[str], args: Mapping[str, Any]) -> tuple[dict[str, Any], list[MediaFile]]:
    """A callback's arguments, by Synapse's parameter names, as the module gets them; with
    the temporary media files to close after the call."""
    decoded: dict[str, Any] = {}
    files: list[MediaFile] = []
    for name in params:
        if name == "file_wrapper":
            media = MediaFile(args.get("file") or {})
            files.append(media)
            decoded[name] = media.wrapper
        elif name in args:
            decoder = DECODERS.get(name)
            try:
                decoded[name] = decoder(args[name]) if decoder else args[name]
            except MalformedArguments:
                raise
            except (KeyError, TypeError, ValueError) as e:
                raise MalformedArguments(f"argument `{name}`: {type(e).__name__}: {e}") from e
    return decoded, files
