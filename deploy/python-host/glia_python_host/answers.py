"""A module's return values and exceptions as glia's wire answers (bus schema `answer` and
`InvocationError`), in Synapse's vocabulary: the inverse of the bridge's `replies`.

The answer is the module's *raw* answer, read afterwards by glia's rules as Synapse reads it.
Where Synapse reads a value by identity or by type (`res is False`, `res is NOT_SPAM`,
`isinstance(res, dict)`, `isinstance(res, str)`, ...) and JSON cannot say what Synapse would
see (an identity, a type, a Python truthiness), the host reads the value here, with Synapse's
own test, and sends the outcome in a form glia reads the same way:

- `NOT_SPAM` is compared by identity, as Synapse does (`res is NOT_SPAM`). Only the very object
  becomes `"NOT_SPAM"`; any other string is sent as the deprecated message answer, which glia
  reads as Synapse reads a string (for `check_event_for_spam` a message, compared with
  `NOT_SPAM` by equality as Synapse does there; for the `user_may_*` checks an invalid value,
  so `M_FORBIDDEN`). A value Synapse finds invalid is sent as `null` (invalid everywhere).
- Only the very `True` and `False` are sent as booleans where Synapse asks `is True` /
  `is False`; where Synapse reads truthiness, the host sends Python's `bool(value)`.
- A value Synapse cannot use at all (`check_event_allowed`'s answer that cannot be unpacked, a
  `check_registration_for_spam` answer that is not a `RegistrationBehaviour`, ...) raises
  here, as it raises in Synapse, and is the module's failure.
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


def spam_answer(value: Any, callback: str = "a spam check") -> Any:
    """A spam checker's answer: `NOT_SPAM` (by identity), a legacy bool (`True` or `False`
    themselves), `Codes` or `(Codes, dict)` (Synapse's `isinstance` tests), a message (any
    other string); anything else is invalid in Synapse, and sent as `null` (a dict must not
    reach glia as an object that reads as an errcode or a message)."""
    from synapse.api.errors import Codes
    from synapse.module_api import NOT_SPAM

    if value is NOT_SPAM:
        return "NOT_SPAM"
    if value is True or value is False:
        return value
    if isinstance(value, Codes):
        return {"errcode": value.value}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Codes) and isinstance(value[1], dict):
        return {"errcode": value[0].value, "fields": json_value(value[1])}
    if isinstance(value, str):
        return {"message": value}
    logger.warning("%s: the module returned an invalid value %r, which Synapse denies", callback, value)
    return None


def truthy_answer(value: Any) -> bool:
    """`should_drop_federated_event`, `check_username_for_spam`,
    `is_user_allowed_to_upload_media_of_size`: Synapse reads them by truthiness (`if res:`,
    `if not res:`), so Python's truthiness is sent (JSON's differs for objects)."""
    return bool(value)


def false_denies_answer(value: Any) -> bool | None:
    """The third-party rules checks and `is_3pid_allowed`: only `res is False` denies; `True`
    is sent as is and any other value as `null` (which glia reads as allow, as Synapse does)."""
    if value is True or value is False:
        return value
    return None


def event_allowed_answer(value: Any) -> JsonDict:
    """`check_event_allowed`'s `(allowed, replacement)`, read as Synapse reads it: unpacked
    (any value that cannot be unpacked into two is the module's failure, Synapse's 500); only
    `allowed is False` denies (its replacement is ignored); otherwise a replacement that is a
    `dict` replaces the event and stops the walk, whatever `allowed` is (`(None, {...})`
    included); anything else (`(None, None)`, `(0, ...)`, a replacement that is not a dict)
    carries on to the next module."""
    try:
        allowed, replacement = value
    except (TypeError, ValueError) as e:
        raise TypeError(f"check_event_allowed answered {value!r}, which Synapse cannot unpack: {e}") from e
    if allowed is False:
        return {"allowed": False}
    answer: JsonDict = {"allowed": True if allowed is True else None}
    if isinstance(replacement, dict):
        answer["replacement"] = json_value(replacement)
    return answer


def expired_answer(value: Any) -> bool | None:
    """`is_user_expired`: the first answer that `is not None` decides; Synapse's callers read
    it by truthiness, so it is sent as `bool(value)`."""
    return None if value is None else bool(value)


def registration_answer(value: Any) -> str:
    """`check_registration_for_spam`: Synapse asserts a `RegistrationBehaviour` (a string
    such as `"deny"` fails that assertion: a 500)."""
    from synapse.spam_checker_api import RegistrationBehaviour

    if not isinstance(value, RegistrationBehaviour):
        raise AssertionError(f"check_registration_for_spam answered {value!r}, not a RegistrationBehaviour")
    return str(value.value)


def name_answer(callback: str, value: Any) -> str | None:
    """`get_username_for_registration`, `get_displayname_for_registration`: a `str` wins;
    anything else is ignored (Synapse logs a warning and asks the next module)."""
    if isinstance(value, str):
        return value
    if value is not None:
        logger.warning("Ignoring non-string value returned by %s callback: %r", callback, value)
    return None


def first_truthy_answer(value: Any) -> Any:
    """`get_media_config_for_user`: Synapse takes the first truthy answer (`if res:`); a falsy
    one (`{}`, `False`, `0`) is "no opinion", sent as `null`."""
    return json_value(value) if value else None


def ratelimit_answer(value: Any) -> Any:
    """`get_ratelimit_override_for_user`: the first truthy answer, whose `per_second` and
    `burst_count` Synapse reads as attributes (a dict has none: Synapse fails); a falsy one is
    "no opinion"."""
    if not value:
        return None
    return {"per_second": value.per_second, "burst_count": value.burst_count}


def users_for_states_answer(value: Any) -> Any:
    """`get_users_for_states`: `{user_id: {state, ...}}`. As in Synapse, an answer that is not
    a `dict` is skipped (logged), and reading it stops at the first value that is not a `set`
    (the entries before it count)."""
    if not isinstance(value, dict):
        logger.warning("get_users_for_states: wrong type returned: %r, expected Dict", value)
        return {}
    users: JsonDict = {}
    for user, states in value.items():
        if not isinstance(states, set):
            logger.warning("get_users_for_states: wrong type returned: %r, expected Set", states)
            break
        users[str(user)] = [json_value(s.as_dict()) for s in states]
    return users


def interested_users_answer(value: Any) -> Any:
    """`get_interested_users`: `"ALL"` (compared by equality, as Synapse does), or a `set` of
    user ids; anything else is skipped (logged), as Synapse skips it."""
    from synapse.module_api import PRESENCE_ALL_USERS

    if value == PRESENCE_ALL_USERS:
        return "ALL"
    if not isinstance(value, set):
        logger.warning("get_interested_users: wrong type returned: %r, expected set", value)
        return []
    return sorted(str(u) for u in value)


def auth_answer(value: Any) -> Any:
    """`check_auth` / `check_3pid_auth`: `{"user_id"}` for Synapse's well-formed answer, a
    `tuple` of a `str` and a callable or `None`; `null` for `None` and for any other answer,
    which Synapse logs and skips ("Wrong type returned by module API callback"). A post-login
    callback (the tuple's second item) is the host's to keep (`HostedModule`, `post_login`)."""
    if value is None:
        return None
    well_formed = (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and (value[1] is None or callable(value[1]))
    )
    if not well_formed:
        logger.warning("Wrong type returned by the auth checker: %r, expected (str, Callable | None) | None", value)
        return None
    return {"user_id": value[0]}


def upload_limits_answer(value: Any) -> Any:
    """`get_media_upload_limits_for_user`: a list of `MediaUploadLimit`s, or null. Synapse
    sorts the list in place (`res.sort(...)`), which fails for anything but a list; so does
    the host."""
    if value is None:
        return None
    value.sort(key=lambda limit: limit.time_period_ms, reverse=True)
    return [json_value(limit) for limit in value]


def unsigned_answer(value: Any) -> Any:
    """`add_field_to_unsigned`: Synapse merges the answer with `dict.update`, which takes a
    mapping or an iterable of key/value pairs (and fails for anything else, `None` included)."""
    fields: dict[Any, Any] = {}
    fields.update(value)
    return json_value(fields)


def legacy_renew_answer(value: Any) -> Any:
    """`on_legacy_renew`'s `(valid, stale, expiry_ts)` (Synapse's servlet reads the two flags
    by truthiness)."""
    valid, stale, expiry_ts = value
    return {"valid": bool(valid), "stale": bool(stale), "expiry_ts": int(expiry_ts)}


#: Answers whose encoding differs from the callback's reply kind's.
_BY_CALLBACK: dict[str, Callable[[Any], Any]] = {
    "check_auth": auth_answer,
    "check_3pid_auth": auth_answer,
    "is_user_expired": expired_answer,
    "is_user_allowed_to_upload_media_of_size": truthy_answer,
    "get_username_for_registration": lambda value: name_answer("get_username_for_registration", value),
    "get_displayname_for_registration": lambda value: name_answer("get_displayname_for_registration", value),
    "get_media_config_for_user": first_truthy_answer,
    "get_media_upload_limits_for_user": upload_limits_answer,
    "get_ratelimit_override_for_user": ratelimit_answer,
    "on_legacy_renew": legacy_renew_answer,
}

#: Answers by the callback's reply kind (the bridge's catalogue).
_BY_KIND: dict[type, Callable[[Any], Any]] = {
    Truthy: truthy_answer,
    YesNo: false_denies_answer,
    EventAllowed: event_allowed_answer,
    Notify: lambda value: None,
    Registration: registration_answer,
    UnsignedFields: unsigned_answer,
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
    if isinstance(kind, Spam):
        return spam_answer(value, callback)
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
