"""The bridge's `ModuleApi` channel: the calls hosted Python modules make to their homeserver,
answered by Synapse's real `ModuleApi`.

glia's Python hosts run unmodified Synapse modules out of process. When such a module asks its
homeserver something (`get_room_state`, `check_user_exists`, `update_room_membership`, ...),
the host sends the call here: `POST /_glia/v1/module_api/<call>` with `{"args": {...}}` and
the channel's secret as a bearer token, on a listener of its own (loopback by default, never
Synapse's public listeners: these calls can register users and send events as anyone). The
bridge makes the call on its `ModuleApi` and answers `{"result": ...}`; a `SynapseError` the
call raised comes back with its status and Matrix body (`"glia_synapse_error": true`), so the
host raises the same error to the module. Only the calls in `module_api_calls.CALLS` exist.
"""

from __future__ import annotations

import hmac
import inspect
import json
import logging
from typing import Any

from synapse.api.errors import SynapseError
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from glia_synapse.events_in_flight import IN_FLIGHT
from glia_synapse.module_api_calls import CALL_PATH, CALLS, SET_SOFT_FAILED, decode_arguments, encode_result

logger = logging.getLogger(__name__)


class ModuleApiResource(Resource):
    """Answers `POST <CALL_PATH><call>` with the call's result (a leaf: every call below it)."""

    isLeaf = True

    def __init__(self, api: Any, secret: str) -> None:
        super().__init__()
        self._api = api
        self._secret = secret.encode()

    def render_POST(self, request: Any) -> Any:
        """Starts the call in a log context of its own (as Synapse's own background work runs);
        the response is written when it completes."""
        self._api.run_as_background_process("glia_module_api_call", self._answer, request)
        return NOT_DONE_YET

    async def _answer(self, request: Any) -> None:
        try:
            status, body = await self._call(request)
        except Exception as e:
            logger.exception("answering a ModuleApi call failed")
            status, body = 500, {"errcode": "M_UNKNOWN", "error": f"{type(e).__name__}: {e}"}
        _write(request, status, body)

    async def _call(self, request: Any) -> tuple[int, dict[str, Any]]:
        header = request.requestHeaders.getRawHeaders(b"Authorization") or [b""]
        token = header[0].removeprefix(b"Bearer ")
        if not hmac.compare_digest(token, self._secret):
            logger.warning(
                "refused a ModuleApi call with a wrong or missing secret from %s", request.getClientAddress()
            )
            return 403, {"errcode": "M_UNKNOWN_TOKEN", "error": "wrong or missing module API secret"}
        path = request.path.decode("utf-8", "replace")
        name = path[len(CALL_PATH) :] if path.startswith(CALL_PATH) else ""
        if name == SET_SOFT_FAILED:
            return set_soft_failed(request)
        call = CALLS.get(name)
        if call is None:
            return 404, {"errcode": "M_UNRECOGNIZED", "error": f"no ModuleApi call {name!r}"}
        try:
            body = json.loads(request.content.read() or b"{}")
            args = decode_arguments(call, body.get("args") or {})
        except (ValueError, AttributeError) as e:
            return 400, {"errcode": "M_BAD_JSON", "error": f"unreadable arguments: {e}"}
        target: Any = self._api
        for part in name.split("."):
            target = getattr(target, part)
        try:
            result = target(**args)
            if inspect.isawaitable(result):
                result = await result
            return 200, {"result": encode_result(call, result)}
        except SynapseError as e:
            return e.code, {**e.error_dict(None), "glia_synapse_error": True}
        except TypeError as e:  # bad arguments (a module's mistake, raised natively as well)
            return 400, {"errcode": "M_BAD_JSON", "error": f"{name}: {e}", **_exception(e)}
        except Exception as e:
            logger.exception("ModuleApi.%s failed for a hosted module", name)
            return 500, {"errcode": "M_UNKNOWN", "error": f"{type(e).__name__}: {e}", **_exception(e)}


def _exception(e: Exception) -> dict[str, Any]:
    """The fields that let the host raise `e` again in the module (`RAISED_AGAIN`)."""
    return {"glia_exception": type(e).__name__, "glia_exception_message": str(e)}


def set_soft_failed(request: Any) -> tuple[int, dict[str, Any]]:
    """`SET_SOFT_FAILED`: sets the flag on the live events held under that id."""
    try:
        args = json.loads(request.content.read() or b"{}").get("args") or {}
        event_id, soft_failed = args["event_id"], args["soft_failed"]
    except (ValueError, AttributeError, KeyError) as e:
        return 400, {"errcode": "M_BAD_JSON", "error": f"unreadable arguments: {e!r}"}
    if not isinstance(event_id, str) or not isinstance(soft_failed, bool):
        return 400, {"errcode": "M_BAD_JSON", "error": "expected {event_id: string, soft_failed: boolean}"}
    return 200, {"result": IN_FLIGHT.set_soft_failed(event_id, soft_failed)}


def _write(request: Any, status: int, body: dict[str, Any]) -> None:
    """Writes the JSON answer, unless the host has gone."""
    if getattr(request, "_disconnected", False) or request.finished:
        return
    payload = json.dumps(body).encode()
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", str(len(payload)).encode())
    request.write(payload)
    request.finish()


def listen(api: Any, host: str, port: int, secret: str) -> Any:
    """Starts the channel's listener on `host:port`; returns the listening port."""
    from twisted.internet import reactor

    root = Resource()
    child: Resource = root
    parts = CALL_PATH.strip("/").split("/")
    for part in parts[:-1]:
        node = Resource()
        child.putChild(part.encode(), node)
        child = node
    child.putChild(parts[-1].encode(), ModuleApiResource(api, secret))
    listening = reactor.listenTCP(port, Site(root), interface=host)  # type: ignore[attr-defined]
    logger.info("glia bridge: serving the ModuleApi to glia's Python hosts on %s:%d", host, listening.getHost().port)
    return listening
