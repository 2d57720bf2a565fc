"""A module's return values and exceptions as glia's wire answers (bus schema `answer` and
`InvocationError`), in Synapse's vocabulary: the inverse of the bridge's `replies`.

The answer is the module's *raw* answer, read afterwards by glia's rules exactly as Synapse
reads it, so the host does no judging of its own, with one exception: `NOT_SPAM` is compared
by identity, as Synapse does (`res is NOT_SPAM`). Only the very object becomes `"NOT_SPAM"`; any
other string is sent as the deprecated message answer, which glia reads as Synapse reads a
string (for `check_event_for_spam` a message, compared with `NOT_SPAM` by equality as Synapse
does there; for the `user_may_*` checks an invalid value, so `M_FORBIDDEN`).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable, Mapping
from typing import Any

from glia_synapse.catalogue import BY_NAME
from glia_synapse.convert import plain
from glia_synapse.replies import (
    CreateRoom,
    EventAllowed,
    InterestedUsers,
    Notify,
    Registration,
    Spam,
    Truthy,
    UnsignedFields,
    UsersForStates,
    YesNo,
)

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]


def json_value(value: Any) -> Any:
    """A module's value as JSON: enums by value, attrs classes by their fields, events by their
    dict, sets and tuples as lists; anything else JSON cannot carry as its `repr`."""
    import attr

    if value is None or isinstance(value, (bool, int, float, str)):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if hasattr(value, "get_dict") and hasattr(value, "event_id"):
        return json_value(value.get_dict())
    if attr.has(type(value)):
        return {f.name: json_value(getattr(value, f.name)) for f in attr.fields(type(value))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(v) for v in value]
    return repr(value)


def spam_answer(value: Any) -> Any:
    """A spam checker's answer: `NOT_SPAM` (by identity), a legacy bool, `Codes` or
    `(Codes, dict)`, a message (any other string), or anything else as it is."""
    from synapse.api.errors import Codes
    from synapse.module_api import NOT_SPAM

    if value is NOT_SPAM:
        return "NOT_SPAM"
    if isinstance(value, bool):
        return value
    if isinstance(value, Codes):
        return {"errcode": value.value}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Codes) and isinstance(value[1], dict):
        return {"errcode": value[0].value, "fields": json_value(value[1])}
    if isinstance(value, str):
        return {"message": value}
    return json_value(value)


def truthy_answer(value: Any) -> Any:
    """`should_drop_federated_event`, `check_username_for_spam`: read by truthiness."""
    return bool(value)


def event_allowed_answer(value: Any) -> Any:
    """`check_event_allowed`'s `(bool, dict | None)`; anything else is sent as is (glia
    fails it as Synapse fails to unpack it)."""
    if isinstance(value, tuple) and len(value) == 2:
        allowed, replacement = value
        answer: JsonDict = {"allowed": allowed if isinstance(allowed, bool) else bool(allowed)}
        if replacement is not None:
            answer["replacement"] = json_value(replacement)
        return answer
    return json_value(value)


def users_for_states_answer(value: Any) -> Any:
    """`get_users_for_states`: `{user_id: [state, ...]}`."""
    return {str(user): [json_value(s.as_dict()) for s in states] for user, states in (value or {}).items()}


def interested_users_answer(value: Any) -> Any:
    """`get_interested_users`: a list of user ids, or `"ALL"`."""
    from synapse.module_api import PRESENCE_ALL_USERS

    if value == PRESENCE_ALL_USERS:
        return "ALL"
    return sorted(str(u) for u in value or ())


def auth_answer(value: Any) -> Any:
    """`check_auth` / `check_3pid_auth`: `{"user_id"}` or null. A post-login callback (the
    tuple's second item) cannot run out of process; it is dropped with a warning."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"user_id": value}
    user_id, on_login = value
    if on_login is not None:
        logger.warning("the auth checker returned a post-login callback, which glia cannot call after the login")
    return {"user_id": str(user_id)}


def upload_limits_answer(value: Any) -> Any:
    """`get_media_upload_limits_for_user`: a list of `MediaUploadLimit`s, or null."""
    return None if value is None else [json_value(limit) for limit in value]


def legacy_renew_answer(value: Any) -> Any:
    """`on_legacy_renew`'s `(valid, stale, expiry_ts)`."""
    valid, stale, expiry_ts = value
    return {"valid": bool(valid), "stale": bool(stale), "expiry_ts": int(expiry_ts)}


#: Answers whose encoding differs from the callback's reply kind's.
_BY_CALLBACK: dict[str, Callable[[Any], Any]] = {
    "check_auth": auth_answer,
    "check_3pid_auth": auth_answer,
    "get_media_upload_limits_for_user": upload_limits_answer,
    "on_legacy_renew": legacy_renew_answer,
}

#: Answers by the callback's reply kind (the bridge's catalogue).
_BY_KIND: dict[type, Callable[[Any], Any]] = {
    Spam: spam_answer,
    Truthy: truthy_answer,
    YesNo: json_value,
    EventAllowed: event_allowed_answer,
    Notify: lambda value: None,
    Registration: json_value,
    UnsignedFields: json_value,
    UsersForStates: users_for_states_answer,
    InterestedUsers: interested_users_answer,
}


def answer(callback: str, value: Any, args: Mapping[str, Any]) -> Any:
    """What the module returned to `callback`, as glia's answer. `on_create_room`'s return
    value is ignored as Synapse ignores it; its edits to `request_content` (made in place) are
    the answer."""
    if callback in _BY_CALLBACK:
        return _BY_CALLBACK[callback](value)
    kind = BY_NAME[callback].reply
    if isinstance(kind, CreateRoom):
        return {"request_content": plain(args["request_content"])}
    encode = _BY_KIND.get(type(kind), json_value)
    return encode(value)


def synapse_error(error: Any) -> JsonDict:
    """A `SynapseError` as the bus schema spells it."""
    fields = getattr(error, "_additional_fields", None) or {}
    errcode = error.errcode
    out: JsonDict = {
        "status": int(error.code),
        "errcode": str(getattr(errcode, "value", errcode)),
        "error": str(error.msg),
    }
    if fields:
        out["fields"] = json_value(fields)
    return out


def failure(callback: str, error: BaseException) -> tuple[str, Any]:
    """An exception the module raised, as glia's wire result: `("error", InvocationError)`,
    or for `on_create_room` a `SynapseError` as the `("answer", {"deny": ...})` Synapse makes
    of it (any other exception there is a failure, which glia's policy turns into Synapse's
    403 "Room creation forbidden")."""
    from synapse.api.errors import SynapseError

    message = f"{type(error).__name__}: {error}"
    if isinstance(error, SynapseError):
        if isinstance(BY_NAME[callback].reply, CreateRoom):
            return "answer", {"deny": synapse_error(error)}
        return "error", {"kind": "failed", "message": message, "synapse_error": synapse_error(error)}
    return "error", {"kind": "failed", "message": message}
