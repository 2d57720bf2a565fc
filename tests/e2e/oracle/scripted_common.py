"""What the scripted module (`scripted_synapse.py`) does. One module, loaded twice: by a real
Synapse from `modules:`, and unchanged by glia's Python host (`deploy/python-host/`), which
turns its Python answers into glia's wire answers as it does for any Synapse module.

Both instances read the same script file at every call, so a test changes a module's
behaviour between two client actions without restarting anything, and both append one JSON
line per call to a calls file, so a test can compare which modules Synapse and glia invoked,
and with what.

The script is a JSON object: module name -> callback name -> action. No entry means the
callback's neutral answer (`NOT_SPAM`, `None`, `True`, ... as Synapse's own default).

Actions:

- `{"return": VALUE}`: answer VALUE (encoding below);
- `{"raise": {"status": 429, "errcode": "M_LIMIT_EXCEEDED", "error": "...", "fields": {...}}}`:
  raise `SynapseError(status, error, errcode, fields)`;
- `{"raise": {"exception": "message"}}`: raise a plain exception;
- `{"sleep": SECONDS, "then": ACTION}`: wait, then do ACTION;
- `{"exit": CODE}`: end the module's process at once (`os._exit`), as a crashing module does;
- `{"block": SECONDS, "then": ACTION}`: block the process's thread (`time.sleep`, as a module
  calling a blocking library does: nothing else runs on its event loop meanwhile), then ACTION;
- `{"leak": KIB, "then": ACTION}`: keep KIB kibibytes for good (a module that leaks), then ACTION;
- `{"print": TEXT, "then": ACTION}`: write TEXT to the process's standard output (file
  descriptor 1, past any Python-level redirection), then ACTION;
- `{"if": COND, "then": ACTION, "else": ACTION}`: COND is `{"arg": "dotted.path", "contains":
  "text"}` or `{"arg": ..., "equals": value}` on the call's argument view (see `view_args`;
  a media file's bytes are `file.content`, decoded as Latin-1); `else` defaults to neutral.

Values (JSON cannot tell `Codes.FORBIDDEN` from a string, so most are tagged):

| JSON | the module's (Synapse's) value |
|---|---|
| `"NOT_SPAM"`, `true`, `false`, `null`, numbers | the same (`"NOT_SPAM"` is the `NOT_SPAM` object) |
| `{"codes": "M_X"}` | `Codes.X` |
| `{"codes": "M_X", "fields": {...}}` | `(Codes.X, {...})` |
| `{"message": "text"}`, `{"string": "text"}` | `"text"` (a string built at run time) |
| `{"dict": {...}}` | the dict |
| `{"event_allowed": [ok, replacement]}` | `(ok, replacement)` |
| `{"replace_content": {...}}` | `(True, the event with this content)` |
| `{"replace_content": {...}, "allowed": X}` | `(X, the event with this content)` |
| `{"soft_fail": VALUE}` | VALUE, after setting the event's `internal_metadata.soft_failed` |
| `{"upload_limits": [{max_bytes, time_period_ms, ...}]}` | `[MediaUploadLimit(...)]` |
| `{"ratelimit": {per_second, burst_count}}` | `RatelimitOverride(...)` |
| `{"registration": "allow" / "shadow_ban" / "deny"}` | `RegistrationBehaviour(...)` |
| `{"users": [...]}` / `{"users": "ALL"}` | a set of user ids / `"ALL"` |
| `{"auth": "@u:hs"}`, `{"auth": {"arg": "username"}}` | `(user id, None)` (the named argument) |
| `{"request_content": {...}}` (on_create_room) | merged into the live request, `None` |
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOT_SPAM = "NOT_SPAM"

#: Synapse's `register_*_callbacks` method per category.
SPAM = "register_spam_checker_callbacks"
RULES = "register_third_party_rules_callbacks"
VALIDITY = "register_account_validity_callbacks"
PRESENCE = "register_presence_router_callbacks"
PASSWORD = "register_password_auth_provider_callbacks"
MEDIA = "register_media_repository_callbacks"
RATELIMIT = "register_ratelimit_callbacks"
ACCOUNT_DATA = "register_account_data_callbacks"
UNSIGNED = "register_add_extra_fields_to_unsigned_client_event_callbacks"
BACKGROUND = "register_background_update_controller_callbacks"
FEDERATION = "register_federation_callbacks"


@dataclass(frozen=True)
class Spec:
    """One callback: where Synapse registers it, its parameters in Synapse's order (the
    wire request's keys), how its answer is read, and its neutral answer (JSON encoding)."""

    category: str
    params: tuple[str, ...]
    kind: str
    neutral: Any


def _spec(category: str, params: str, kind: str, neutral: Any) -> Spec:
    return Spec(category, tuple(params.split()), kind, neutral)


_NOT_SPAM = ("spam", NOT_SPAM)
_YES = ("yes_no", True)
_NOTIFY = ("notify", None)

#: Every callback the scripted module can register (the legacy account-validity slots
#: aside: they take over Synapse endpoints). `check_auth` is registered per login type.
CALLBACKS: dict[str, Spec] = {
    "check_event_for_spam": _spec(SPAM, "event", *_NOT_SPAM),
    "should_drop_federated_event": _spec(SPAM, "event", "truthy", False),
    "user_may_join_room": _spec(SPAM, "user_id room_id is_invited", *_NOT_SPAM),
    "user_may_invite": _spec(SPAM, "inviter invitee room_id", *_NOT_SPAM),
    "federated_user_may_invite": _spec(SPAM, "event", *_NOT_SPAM),
    "user_may_send_3pid_invite": _spec(SPAM, "inviter medium address room_id", *_NOT_SPAM),
    "user_may_create_room": _spec(SPAM, "user_id room_config", *_NOT_SPAM),
    "user_may_create_room_alias": _spec(SPAM, "user_id room_alias", *_NOT_SPAM),
    "user_may_publish_room": _spec(SPAM, "user_id room_id", *_NOT_SPAM),
    "user_may_send_state_event": _spec(SPAM, "user_id room_id event_type state_key content", *_NOT_SPAM),
    "check_username_for_spam": _spec(SPAM, "user_profile requester_id", "truthy", False),
    "check_registration_for_spam": _spec(
        SPAM, "email_threepid username request_info auth_provider_id", "registration", {"registration": "allow"}
    ),
    "check_media_file_for_spam": _spec(SPAM, "file_wrapper file_info", *_NOT_SPAM),
    "check_login_for_spam": _spec(
        SPAM, "user_id device_id initial_display_name request_info auth_provider_id", *_NOT_SPAM
    ),
    "check_event_allowed": _spec(RULES, "event state_events", "event_allowed", {"event_allowed": [True, None]}),
    "on_create_room": _spec(RULES, "requester request_content is_requester_admin", "create_room", None),
    "check_threepid_can_be_invited": _spec(RULES, "medium address state_events", *_YES),
    "check_visibility_can_be_modified": _spec(RULES, "room_id state_events new_visibility", *_YES),
    "on_new_event": _spec(RULES, "event state_events", *_NOTIFY),
    "check_can_shutdown_room": _spec(RULES, "user_id room_id", *_YES),
    "check_can_deactivate_user": _spec(RULES, "user_id by_admin", *_YES),
    "on_profile_update": _spec(RULES, "user_id new_profile by_admin deactivation", *_NOTIFY),
    "on_user_deactivation_status_changed": _spec(RULES, "user_id deactivated by_admin", *_NOTIFY),
    "on_threepid_bind": _spec(RULES, "user_id medium address", *_NOTIFY),
    "on_add_user_third_party_identifier": _spec(RULES, "user_id medium address", *_NOTIFY),
    "on_remove_user_third_party_identifier": _spec(RULES, "user_id medium address", *_NOTIFY),
    "is_user_expired": _spec(VALIDITY, "user_id", "value", None),
    "on_user_registration": _spec(VALIDITY, "user_id", *_NOTIFY),
    "on_user_login": _spec(VALIDITY, "user_id auth_provider_type auth_provider_id", *_NOTIFY),
    "get_users_for_states": _spec(PRESENCE, "state_updates", "value", {"dict": {}}),
    "get_interested_users": _spec(PRESENCE, "user_id", "value", {"users": []}),
    "check_auth": _spec(PASSWORD, "username login_type login_dict", "value", None),
    "check_3pid_auth": _spec(PASSWORD, "medium address password", "value", None),
    "on_logged_out": _spec(PASSWORD, "user_id device_id access_token", *_NOTIFY),
    "get_username_for_registration": _spec(PASSWORD, "uia_results params", "value", None),
    "get_displayname_for_registration": _spec(PASSWORD, "uia_results params", "value", None),
    "is_3pid_allowed": _spec(PASSWORD, "medium address registration", *_YES),
    "get_media_config_for_user": _spec(MEDIA, "user_id", "value", None),
    "is_user_allowed_to_upload_media_of_size": _spec(MEDIA, "user_id size", "value", True),
    "get_media_upload_limits_for_user": _spec(MEDIA, "user_id", "value", None),
    "on_media_upload_limit_exceeded": _spec(MEDIA, "user_id limit sent_bytes attempted_bytes", *_NOTIFY),
    "get_ratelimit_override_for_user": _spec(RATELIMIT, "user_id limiter_name", "value", None),
    "on_account_data_updated": _spec(ACCOUNT_DATA, "user_id room_id account_data_type content", *_NOTIFY),
    "add_field_to_unsigned": _spec(UNSIGNED, "event", "value", {"dict": {}}),
    "on_update": _spec(BACKGROUND, "update_name database_name one_shot", "value", 100),
    "default_batch_size": _spec(BACKGROUND, "update_name database_name", "value", 100),
    "min_batch_size": _spec(BACKGROUND, "update_name database_name", "value", 1),
    "on_event_delivered_over_federation": _spec(FEDERATION, "delivery", *_NOTIFY),
}


# -- the script ---------------------------------------------------------------------------


class ScriptError(Exception):
    """The script says something this module cannot do."""


@dataclass(frozen=True)
class Raise:
    """The action's outcome is an exception: a `SynapseError` (when `status` is set) or a
    plain one."""

    message: str
    status: int | None = None
    errcode: str = "M_UNKNOWN"
    fields: Mapping[str, Any] | None = None


def read_script(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The script file's current content (an absent or empty file is the empty script)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    return json.loads(text) if text.strip() else {}


def action_for(script: Mapping[str, Any], module: str, callback: str) -> Any:
    """What `script` says `module` does on `callback` (None: the neutral answer)."""
    return (script.get(module) or {}).get(callback)


def lookup(view: Any, dotted: str) -> Any:
    """`view["a"]["b"]` for `"a.b"` (None when any step is missing)."""
    for part in dotted.split("."):
        if isinstance(view, Mapping):
            view = view.get(part)
        elif isinstance(view, Sequence) and not isinstance(view, str) and part.isdigit() and int(part) < len(view):
            view = view[int(part)]
        else:
            return None
    return view


def holds(condition: Mapping[str, Any], view: Mapping[str, Any]) -> bool:
    """Whether an `if` condition holds for the argument view."""
    value = lookup(view, condition["arg"])
    if "contains" in condition:
        needle = condition["contains"]
        if isinstance(value, str):
            return needle in value
        return isinstance(value, (list, tuple)) and needle in value
    if "equals" in condition:
        return value == condition["equals"]
    raise ScriptError(f"unknown condition {condition!r}")


@dataclass(frozen=True)
class Step:
    """One resolved action: seconds to sleep first, then a value (JSON encoding) or a raise."""

    sleep: float
    value: Any = None
    error: Raise | None = None
    block: float = 0.0
    leak_kib: int = 0
    print_text: str = ""
    exit: int | None = None


def resolve(action: Any, spec: Spec, view: Mapping[str, Any]) -> Step:
    """Follows `if`s, `sleep`s, `block`s and `leak`s down to what to answer; each adds up."""
    extra: dict[str, Any] = {"block": 0.0, "leak_kib": 0, "print": ""}
    step = _resolve(action, spec, view, extra)
    return Step(step.sleep, step.value, step.error, extra["block"], int(extra["leak_kib"]), extra["print"], step.exit)


def _resolve(action: Any, spec: Spec, view: Mapping[str, Any], extra: dict[str, Any]) -> Step:
    sleep = 0.0
    while True:
        if action is None:
            return Step(sleep, spec.neutral)
        if not isinstance(action, Mapping):
            raise ScriptError(f"an action is an object, not {action!r}")
        if "sleep" in action:
            sleep += float(action["sleep"])
            action = action.get("then")
        elif "block" in action or "leak" in action:
            extra["block"] += float(action.get("block", 0))
            extra["leak_kib"] += int(action.get("leak", 0))
            action = action.get("then")
        elif "print" in action:
            extra["print"] += str(action["print"])
            action = action.get("then")
        elif "if" in action:
            action = action.get("then") if holds(action["if"], view) else action.get("else")
        elif "return" in action:
            return Step(sleep, action["return"])
        elif "exit" in action:
            return Step(sleep, exit=int(action["exit"]))
        elif "raise" in action:
            raised = action["raise"]
            if "exception" in raised:
                return Step(sleep, error=Raise(str(raised["exception"])))
            return Step(
                sleep,
                error=Raise(
                    message=raised.get("error", ""),
                    status=int(raised.get("status", 400)),
                    errcode=raised.get("errcode", "M_UNKNOWN"),
                    fields=raised.get("fields"),
                ),
            )
        else:
            raise ScriptError(f"unknown action {action!r}")


# -- what is recorded -------------------------------------------------------------------------

#: Longest string kept in a call record (a media file's content is cut there).
RECORD_STRING_LIMIT = 200


def event_view(event: Any) -> Any:
    """The parts of an event (a PDU dict) the tests look at."""
    if not isinstance(event, Mapping):
        return event
    view = {key: event.get(key) for key in ("type", "sender", "room_id", "content") if key in event}
    if "state_key" in event:
        view["state_key"] = event["state_key"]
    return view


def view_args(callback: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments as both forms of the module see them, in JSON: events reduced
    to type, sender, room, content and state key; state maps to their size; the rest as is.
    `args` is already JSON (the native module converts Synapse's objects first)."""
    view: dict[str, Any] = {}
    for key, value in args.items():
        if key in ("event",):
            view[key] = event_view(value)
        elif key == "state_events":
            view[key] = len(value) if isinstance(value, (list, tuple, Mapping)) else value
        elif key == "delivery" and isinstance(value, Mapping):
            view[key] = {**value, "events": [event_view(e) for e in value.get("events") or ()]}
        else:
            view[key] = value
    return view


def shorten(value: Any) -> Any:
    """`value` with long strings cut (for the call record)."""
    if isinstance(value, str) and len(value) > RECORD_STRING_LIMIT:
        return value[:RECORD_STRING_LIMIT] + "..."
    if isinstance(value, Mapping):
        return {k: shorten(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shorten(v) for v in value]
    return value


def record_call(calls: str | os.PathLike[str], module: str, callback: str, view: Mapping[str, Any]) -> None:
    """Appends one call to the calls file (one JSON object per line, written at once), with
    the process that served it (several Python hosts may serve one module)."""
    record = {"module": module, "callback": callback, "args": shorten(view), "time": time.time(), "pid": os.getpid()}
    line = json.dumps(record)
    with open(calls, "a") as f:
        f.write(line + "\n")


def read_calls(calls: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every call recorded so far."""
    try:
        lines = Path(calls).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def auth_user(spec: Any, args: Mapping[str, Any]) -> Any:
    """An `auth` value's user id: the string itself, or the named argument's value."""
    return args.get(spec["arg"]) if isinstance(spec, Mapping) else spec
