"""The host's end of the `ModuleApi` channel: the bridge, which holds Synapse's real
`ModuleApi`, answers the calls a hosted module makes to its homeserver.

A call is `POST <url>/_glia/v1/module_api/<name>` with `{"args": {...}}` and the channel's
secret as a bearer token; the bridge answers `{"result": ...}`, or the error Synapse raised
(its status and Matrix error body, which the host raises again as the same `SynapseError`; other
builtin exceptions and the module API's own errors are raised again by class).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from glia_python_host.settings import ModuleApiChannel
from glia_synapse.module_api_calls import CALL_PATH, CALLS, SET_SOFT_FAILED, encode_arguments, exception_class


class NotAvailableOutOfProcess(RuntimeError):
    """A `ModuleApi` method or Synapse internal a hosted module cannot use out of process."""


class ChannelError(RuntimeError):
    """The bridge could not be asked, or answered something that is not an answer."""


class Channel:
    """Calls `ModuleApi` methods in the homeserver, through the bridge."""

    def __init__(self, settings: ModuleApiChannel | None, http_client: Any) -> None:
        self._settings = settings
        self._http = http_client

    async def call(self, name: str, args: Mapping[str, Any]) -> Any:
        """Calls `name` with `args` in the homeserver; returns its JSON result, or raises the
        `SynapseError` it raised there."""
        return await self._post(name, encode_arguments(CALLS[name], args))

    async def set_soft_failed(self, event_id: str, soft_failed: bool) -> int:
        """Sets `soft_failed` on Synapse's own event `event_id`, which a callback in flight
        holds in the bridge; returns how many such events the bridge held."""
        result = await self._post(SET_SOFT_FAILED, {"event_id": event_id, "soft_failed": soft_failed})
        return int(result)

    async def _post(self, name: str, args: Mapping[str, Any]) -> Any:
        from synapse.api.errors import HttpResponseException, SynapseError

        if self._settings is None:
            raise NotAvailableOutOfProcess(
                f"ModuleApi.{name} asks the homeserver, and glia's config has no `python.module_api` "
                "channel to the bridge; configure one (see docs/python-host.md)"
            )
        url = self._settings.url + CALL_PATH + name
        headers = {b"Authorization": [b"Bearer " + self._settings.secret.encode()]}
        try:
            reply = await self._http.post_json_get_json(url, {"args": dict(args)}, headers=headers)
        except HttpResponseException as e:
            body = _error_body(e)
            if body.get("glia_synapse_error") is True:
                fields = {k: v for k, v in body.items() if k not in ("errcode", "error", "glia_synapse_error")}
                raise SynapseError(
                    e.code, str(body.get("error", "")), str(body.get("errcode")), fields or None
                ) from None
            raised = exception_class(str(body.get("glia_exception")))
            if raised is not None:
                raise raised(str(body.get("glia_exception_message", ""))) from None
            raise ChannelError(f"ModuleApi.{name} failed in the homeserver: HTTP {e.code}: {body or e.msg}") from None
        except Exception as e:
            raise ChannelError(f"cannot reach the bridge's module API at {self._settings.url}: {e}") from e
        if not isinstance(reply, dict) or "result" not in reply:
            raise ChannelError(f"the bridge answered ModuleApi.{name} with {reply!r}")
        return reply["result"]


def _error_body(error: Any) -> dict[str, Any]:
    try:
        body = json.loads(error.response or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
