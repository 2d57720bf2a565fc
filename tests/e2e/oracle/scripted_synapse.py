"""The scripted module as a native Synapse module: the oracle the glia path is compared with.

Load it from `homeserver.yaml` with this directory on Synapse's `PYTHONPATH`:

```yaml
modules:
  - module: scripted_synapse.ScriptedModule
    config:
      name: s1                        # the script's key and the call records' "module"
      script: /tmp/x/script.json      # read at every call (see scripted_common)
      calls: /tmp/x/calls.jsonl       # one JSON line appended per call
      callbacks: [check_event_for_spam, user_may_invite, on_update, ...]
      login_types: {org.example.scripted: [token]}      # auth checkers (check_auth)
      web_resources: [/_synapse/client/demo/hello]      # the docs' demo resource
      load_delay: 2                   # seconds the constructor blocks, as a slow import does
      check_delay: 8                  # seconds parse_config blocks (a slow config check)
      load_gate: /tmp/x/hold          # the constructor waits while this file exists
```

Each listed callback is registered with the `register_*_callbacks` method Synapse has for it
(`on_update` with `default_batch_size` and `min_batch_size` when listed; the presence pair
must be listed together, as Synapse requires). A call converts Synapse's arguments to JSON
(events as PDU dicts, a media file's bytes read through `write_chunks_to`), records them,
and does what the script says, with Synapse's own types (`NOT_SPAM`, `Codes`,
`MediaUploadLimit`, `RatelimitOverride`, `RegistrationBehaviour`, `SynapseError`, ...).
"""

from __future__ import annotations

import enum
import inspect
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

import attr
from scripted_common import (
    BACKGROUND,
    CALLBACKS,
    PASSWORD,
    PRESENCE,
    UNSIGNED,
    Raise,
    ScriptError,
    Spec,
    action_for,
    auth_user,
    read_script,
    record_call,
    resolve,
    view_args,
)
from synapse.api.errors import Codes, SynapseError
from synapse.config.repository import MediaUploadLimit
from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.callbacks.ratelimit_callbacks import RatelimitOverride
from synapse.module_api.errors import ConfigError
from synapse.spam_checker_api import RegistrationBehaviour
from synapse.types import DomainSpecificString, Requester, UserID
from twisted.web.resource import Resource
from twisted.web.server import Request

Callback = Callable[..., Awaitable[Any]]


def to_json(value: Any) -> Any:
    """Synapse's argument values as JSON: events as their PDU dict (with `event_id`), state
    maps as lists of events, ids as strings, attrs classes as objects, sets as sorted lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if hasattr(value, "get_dict") and hasattr(value, "event_id"):
        return {**to_json(value.get_dict()), "event_id": value.event_id}
    if isinstance(value, DomainSpecificString):
        return value.to_string()
    if isinstance(value, Requester):
        return {
            "user_id": value.user.to_string(),
            "device_id": value.device_id,
            "is_guest": value.is_guest,
            "app_service_id": getattr(value, "app_service_id", None),
        }
    if attr.has(type(value)):
        return {f.name: to_json(getattr(value, f.name)) for f in attr.fields(type(value))}
    if isinstance(value, Mapping):
        if any(isinstance(k, tuple) for k in value):  # a StateMap: (type, state_key) -> event
            return [to_json(v) for v in value.values()]
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(to_json(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return repr(value)


def to_native(value: Any, spec: Spec, args: Mapping[str, Any]) -> Any:
    """A value of the script (JSON encoding, see scripted_common) as Synapse's own type."""
    if value == "NOT_SPAM":
        return NOT_SPAM
    if not isinstance(value, Mapping):
        return value
    if "codes" in value:
        code = Codes(value["codes"])
        return (code, dict(value["fields"])) if "fields" in value else code
    if "message" in value:
        return value["message"]
    if "string" in value:
        return value["string"]
    if "dict" in value:
        return dict(value["dict"])
    if "event_allowed" in value:
        allowed, replacement = value["event_allowed"]
        return allowed, replacement
    if "soft_fail" in value:
        args["event"].internal_metadata.soft_failed = True
        return to_native(value["soft_fail"], spec, args)
    if "replace_content" in value:
        return value.get("allowed", True), {**args["event"].get_dict(), "content": value["replace_content"]}
    if "upload_limits" in value:
        return [MediaUploadLimit(**limit) for limit in value["upload_limits"]]
    if "ratelimit" in value:
        return RatelimitOverride(**value["ratelimit"])
    if "registration" in value:
        return RegistrationBehaviour(value["registration"])
    if "users" in value:
        return value["users"] if value["users"] == "ALL" else set(value["users"])
    if "auth" in value:
        return auth_user(value["auth"], args), None
    if "request_content" in value:
        args["request_content"].update(value["request_content"])
        return None
    raise ScriptError(f"unknown value {value!r}")


def raise_native(error: Raise) -> None:
    """Raises what the script says: a `SynapseError` or a plain exception."""
    if error.status is None:
        raise RuntimeError(error.message)
    raise SynapseError(error.status, error.message, error.errcode, dict(error.fields) if error.fields else None)


class DemoResource(Resource):
    """The demo resource of Synapse's module documentation (a plain, non-leaf twisted
    resource): `GET ?name=X` answers `{"hello": "X"}`."""

    def render_GET(self, request: Request) -> bytes:
        names = request.args.get(b"name") or []
        request.setHeader(b"Content-Type", b"application/json")
        if not names:
            request.setResponseCode(400)
            return json.dumps({"errcode": "M_MISSING_PARAM", "error": "Missing parameter: name"}).encode()
        return json.dumps({"hello": names[0].decode()}).encode()


class _UpdateContext:
    """What `on_update` returns: an async context manager whose entry asks the script for
    the batch's target duration (ms)."""

    def __init__(self, run: Callable[[], Awaitable[Any]]) -> None:
        self._run = run

    async def __aenter__(self) -> int:
        return int(await self._run())

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


#: What `leak` actions keep, for good.
_LEAKED: list[bytearray] = []


def _wait_while_exists(gate: str | None) -> None:
    """Holds the constructor while the file `gate` exists (at most two minutes): a test keeps a
    restarted host loading for as long as it needs, without guessing a delay."""
    deadline = time.monotonic() + 120
    while gate and os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)


class ScriptedModule:
    """A Synapse module whose every callback does what a script file says."""

    def __init__(self, config: Mapping[str, Any], api: ModuleApi) -> None:
        time.sleep(float(config.get("load_delay", 0)))
        _wait_while_exists(config.get("load_gate"))
        self._api = api
        self._name: str = config["name"]
        self._script: str = config["script"]
        self._calls: str = config["calls"]
        callbacks = list(config.get("callbacks") or ())
        unknown = [c for c in callbacks if c not in CALLBACKS or c == "check_auth"]
        if unknown:
            raise ConfigError(f"scripted module {self._name}: unknown callbacks {unknown}")
        by_method: dict[str, dict[str, Any]] = {}
        for callback in callbacks:
            spec = CALLBACKS[callback]
            keyword = "add_field_to_unsigned_callback" if spec.category == UNSIGNED else callback
            function = self._on_update() if callback == "on_update" else self._callback(callback, spec)
            by_method.setdefault(spec.category, {})[keyword] = function
        login_types = dict(config.get("login_types") or {})
        if login_types:
            check_auth = self._callback("check_auth", CALLBACKS["check_auth"])
            by_method.setdefault(PASSWORD, {})["auth_checkers"] = {
                (login_type, tuple(fields)): check_auth for login_type, fields in login_types.items()
            }
        if BACKGROUND in by_method and "on_update" not in by_method[BACKGROUND]:
            raise ConfigError(f"scripted module {self._name}: the background-update controller needs on_update")
        if PRESENCE in by_method and len(by_method[PRESENCE]) != 2:
            raise ConfigError(f"scripted module {self._name}: list both presence router callbacks")
        for method, kwargs in by_method.items():
            getattr(api, method)(**kwargs)
        for path in config.get("web_resources") or ():
            api.register_web_resource(path, DemoResource())

    @staticmethod
    def parse_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
        time.sleep(float(config.get("check_delay", 0)))
        for key in ("name", "script", "calls"):
            if not isinstance(config.get(key), str):
                raise ConfigError(f"scripted module: `{key}` (a string) is required")
        return config

    async def run(self, callback: str, spec: Spec, args: dict[str, Any]) -> Any:
        """One call: record the arguments, then do what the script says now."""
        json_args = {key: to_json(value) for key, value in args.items() if key != "file_wrapper"}
        if "file_wrapper" in args:
            chunks: list[bytes] = []
            await args["file_wrapper"].write_chunks_to(chunks.append)
            content = b"".join(chunks)
            json_args["file"] = {"content": content.decode("latin-1"), "length": len(content)}
        view = view_args(callback, json_args)
        record_call(self._calls, self._name, callback, view)
        step = resolve(action_for(read_script(self._script), self._name, callback), spec, view)
        if step.leak_kib:
            # Written to, so the pages are resident (a zeroed allocation may not be).
            _LEAKED.append(bytearray(b"\x01") * (step.leak_kib * 1024))
        if step.print_text:
            os.write(1, step.print_text.encode())
        if step.block:
            time.sleep(step.block)
        if step.sleep:
            await self._api.sleep(step.sleep)
        if step.exit is not None:
            os._exit(step.exit)
        if step.error is not None:
            raise_native(step.error)
        value = to_native(step.value, spec, args)
        if isinstance(step.value, Mapping) and "post_login" in step.value:
            value = (value[0], self._post_login(step.value["post_login"]))
        return value

    def _post_login(self, action: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
        """An auth checker's post-login callback (`{"auth": ..., "post_login": ACTION}`): it
        records the login result's user and keys (the token and device differ per server), then
        sets the user's display name (`displayname`) through the ModuleApi, or raises
        (`raise`: a message)."""

        async def on_login(login_result: Mapping[str, Any]) -> None:
            view = {"user_id": login_result.get("user_id"), "keys": sorted(login_result)}
            record_call(self._calls, self._name, "post_login", view)
            if "displayname" in action:
                user = UserID.from_string(login_result["user_id"])
                await self._api.set_displayname(user, action["displayname"])
            if "raise" in action:
                raise RuntimeError(action["raise"])

        return on_login

    def _callback(self, callback: str, spec: Spec) -> Callback:
        """An async function with Synapse's parameters for `callback` (Synapse counts them
        for `user_may_create_room` and `check_username_for_spam`)."""
        signature = inspect.Signature(
            [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in spec.params]
        )

        async def function(*args: Any, **kwargs: Any) -> Any:
            return await self.run(callback, spec, dict(signature.bind(*args, **kwargs).arguments))

        function.__signature__ = signature  # type: ignore[attr-defined]
        function.__name__ = function.__qualname__ = f"{self._name}_{callback}"
        return function

    def _on_update(self) -> Callable[[str, str, bool], _UpdateContext]:
        """`on_update` is synchronous: it returns the context manager Synapse enters."""
        spec = CALLBACKS["on_update"]

        def on_update(update_name: str, database_name: str, one_shot: bool) -> _UpdateContext:
            args = {"update_name": update_name, "database_name": database_name, "one_shot": one_shot}
            return _UpdateContext(lambda: self.run("on_update", spec, args))

        return on_update


class DoNothingUnsigned:
    """A native module whose `add_field_to_unsigned` adds nothing and does nothing else (the
    baseline of bench_unsigned.py: no script read, no call record)."""

    def __init__(self, config: Mapping[str, Any], api: ModuleApi) -> None:
        async def add_nothing(event: Any) -> dict[str, Any]:
            return {}

        api.register_add_extra_fields_to_unsigned_client_event_callbacks(add_field_to_unsigned_callback=add_nothing)

    @staticmethod
    def parse_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
        return config


class DoNothingSpamChecker:
    """A native module whose `check_event_for_spam` answers `NOT_SPAM` and does nothing else
    (bench_python_host.py: the same module in Synapse and in glia's Python host)."""

    def __init__(self, config: Mapping[str, Any], api: ModuleApi) -> None:
        async def not_spam(event: Any) -> str:
            return NOT_SPAM

        api.register_spam_checker_callbacks(check_event_for_spam=not_spam)

    @staticmethod
    def parse_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
        return config


class SometimesBlocking:
    """A native module whose `user_may_create_room` answers `NOT_SPAM` at once, except for a
    user whose id contains "blocker": that call first blocks the process's thread for
    `block_s` seconds, as a module calling a blocking library does (bench_python_blocking.py)."""

    def __init__(self, config: Mapping[str, Any], api: ModuleApi) -> None:
        block_s = float(config.get("block_s", 0.5))

        async def user_may_create_room(user_id: str) -> str:
            if "blocker" in user_id:
                time.sleep(block_s)
            return NOT_SPAM

        api.register_spam_checker_callbacks(user_may_create_room=user_may_create_room)

    @staticmethod
    def parse_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
        return config
