"""One hosted module: loaded as Synapse loads it, and serving glia's invocations.

`HostedModule.invoke` takes a bus-schema `Invocation` and returns its `InvocationReply`: the
arguments become Synapse's objects (`decode`), the module's function is called as Synapse
calls it, under Twisted (`reactor.settle`), and its return value or exception becomes glia's
answer (`answers`). Nothing the module does escapes as anything but a reply: a bad invocation
is a `failed` error, as the bus protocol asks. A change the module makes to its copy of the
event's `soft_failed` is sent to the bridge before the reply (`HostedModule._write_back`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

from glia_python_host import answers, loader
from glia_python_host.api import HostModuleApi
from glia_python_host.channel import ChannelError, NotAvailableOutOfProcess
from glia_python_host.decode import MalformedArguments, decode_args
from glia_python_host.post_login import PostLogins
from glia_python_host.reactor import settle
from glia_python_host.registry import Registry
from glia_python_host.settings import HomeserverSettings
from glia_synapse.catalogue import BY_NAME

logger = logging.getLogger(__name__)

#: The callbacks whose answer may carry a post-login callback.
_AUTHENTICATING = frozenset({"check_auth", "check_3pid_auth"})

#: Callbacks Synapse calls with fewer arguments when the module's function takes fewer
#: (their older single-argument forms).
_COUNTED = {"user_may_create_room": 1, "check_username_for_spam": 1}


def reply(request_id: str, kind: str, value: Any, callback: str | None = None) -> dict[str, Any]:
    """An `InvocationReply`: an answer to `callback`, or an error."""
    if kind == "answer":
        return {"request_id": request_id, "result": {"answer": {"callback": callback, "answer": value}}}
    return {"request_id": request_id, "result": {"error": value}}


def failed(request_id: str, message: str) -> dict[str, Any]:
    """An `InvocationReply` carrying a `failed` error."""
    return reply(request_id, "error", {"kind": "failed", "message": message})


class HostedModule:
    """A Synapse module, constructed with the host's `ModuleApi`."""

    def __init__(
        self, module: str, config: Mapping[str, Any] | None, settings: HomeserverSettings, instance: str | None = None
    ) -> None:
        """Loads and constructs the module (`instance`: its name in glia's config); raises
        `loader.LoadError`."""
        from twisted.internet import reactor

        self.name = module
        self.instance_name = instance
        self.registry = Registry()
        self.api = HostModuleApi(settings, self.registry, reactor)
        cls, parsed = loader.parse(module, config)
        self.instance = loader.construct(cls, parsed, self.api)
        self.post_logins = PostLogins()

    def describe(self) -> dict[str, Any]:
        """The module's `Description`."""
        return self.registry.describe()

    async def invoke(self, invocation: Any, callback_hint: str | None = None) -> dict[str, Any]:
        """Serves one `Invocation`; returns its `InvocationReply`."""
        if not isinstance(invocation, Mapping):
            return failed("", "malformed invocation: not a JSON object")
        request_id = invocation.get("request_id")
        request_id = request_id if isinstance(request_id, str) else ""
        callback, args = invocation.get("callback"), invocation.get("args")
        if callback_hint is not None and callback != callback_hint:
            return failed(
                request_id, f"malformed invocation: callback {callback!r} on the subject of {callback_hint!r}"
            )
        if not isinstance(callback, str) or callback not in BY_NAME or not isinstance(args, Mapping):
            return failed(request_id, f"malformed invocation of {callback!r}")
        if callback == "post_login":
            return await self._post_login(request_id, args)
        function = self.registry.handler(callback, args)
        if function is None:
            return failed(request_id, f"the module does not serve {callback}")
        try:
            decoded, files = decode_args(BY_NAME[callback].params, args)
        except MalformedArguments as e:
            return failed(request_id, f"malformed invocation of {callback}: {e}")
        try:
            try:
                value = await settle(function(*self._positional(callback, function, decoded)))
            finally:
                await self._write_back(callback, decoded, args)
            if callback == "on_update":
                value = await self._enter(value)
            answer = answers.answer(callback, value, decoded)
            if callback in _AUTHENTICATING and answer is not None and value[1] is not None:
                answer["post_login"] = self.post_logins.keep(value[1])
            return reply(request_id, "answer", answer, callback)
        except Exception as e:  # noqa: BLE001 - whatever the module raises is its answer
            logger.info("%s raised %s: %s", callback, type(e).__name__, e)
            kind, result = answers.failure(callback, e)
            return reply(request_id, kind, result, callback)
        finally:
            for file in files:
                file.close()

    async def _post_login(self, request_id: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Awaits the post-login callback held under `args["handle"]` with the login result,
        as Synapse awaits it once the login completes; what it raises fails the login, as in
        Synapse. An unknown or expired handle calls nothing (logged)."""
        handle, login_result = args.get("handle"), args.get("login_result")
        if not isinstance(handle, str) or not isinstance(login_result, Mapping):
            return failed(request_id, "malformed invocation of post_login")
        if self.instance_name is not None and args.get("module") != self.instance_name:
            return reply(request_id, "answer", None, "post_login")  # another module's login
        on_login = self.post_logins.take(handle)
        if on_login is None:
            logger.warning("no post-login callback under %s (expired, or its host restarted): not called", handle)
            return reply(request_id, "answer", None, "post_login")
        try:
            await settle(on_login(dict(login_result)))
        except Exception as e:  # noqa: BLE001 - whatever the module raises is its answer
            logger.info("the post-login callback raised %s: %s", type(e).__name__, e)
            kind, result = answers.failure("post_login", e)
            return reply(request_id, kind, result, "post_login")
        return reply(request_id, "answer", None, "post_login")

    async def _write_back(self, callback: str, decoded: Mapping[str, Any], args: Mapping[str, Any]) -> None:
        """Tells the bridge when the module changed `soft_failed` on its copy of the event, so
        that Synapse's own event, which the module would have changed in Synapse's process,
        gets it too. Without the ModuleApi channel, or when the bridge holds no such event
        (the callback runs in a Synapse worker, not the channel's process), the change stays
        here, with a warning; it never fails the invocation."""
        event = decoded.get("event")
        if not hasattr(event, "internal_metadata"):
            return
        raw = args.get("event")
        sent = (raw.get("internal_metadata") if isinstance(raw, Mapping) else None) or {}
        soft_failed = bool(event.internal_metadata.is_soft_failed())
        if soft_failed == bool(sent.get("soft_failed", False)):
            return
        event_id = event.event_id
        try:
            held = await settle(self.api.channel.set_soft_failed(event_id, soft_failed))
        except NotAvailableOutOfProcess:
            logger.warning(
                "%s set soft_failed=%s on event %s; without a python.module_api channel to the bridge "
                "that stays in the host, and Synapse's event keeps its flag",
                callback,
                soft_failed,
                event_id,
            )
            return
        except (ChannelError, Exception) as e:  # noqa: BLE001 - never the module's failure
            logger.warning(
                "%s set soft_failed=%s on event %s; telling the bridge failed: %s", callback, soft_failed, event_id, e
            )
            return
        if held == 0:
            logger.warning(
                "%s set soft_failed=%s on event %s, but the bridge at the ModuleApi channel holds no such event "
                "(the callback runs in another Synapse process); Synapse's event keeps its flag",
                callback,
                soft_failed,
                event_id,
            )

    @staticmethod
    async def _enter(manager: Any) -> Any:
        """`on_update`'s answer: the value its async context manager yields (Synapse runs the
        batch inside it; glia only wants the duration)."""
        value = await settle(manager.__aenter__())
        await settle(manager.__aexit__(None, None, None))
        return value

    @staticmethod
    def _positional(callback: str, function: Any, args: Mapping[str, Any]) -> list[Any]:
        """The arguments in Synapse's order, as many as Synapse passes this function."""
        values = [args[name] for name in BY_NAME[callback].params if name in args]
        fewer = _COUNTED.get(callback)
        if fewer is not None:
            try:
                if len(inspect.signature(function).parameters) == fewer:
                    return values[:fewer]
            except (TypeError, ValueError):
                pass
        return values
