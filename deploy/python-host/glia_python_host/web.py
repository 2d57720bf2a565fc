"""Serving the module's web resources (`register_web_resource`) to glia, over a child host's
pipe or over NATS.

The module's resources are Twisted `Resource`s, rendered as Synapse renders them: put in a
resource tree by Synapse's own `create_resource_tree` and served by a Twisted `Site` on a
loopback port of the host's own. A `web` frame from glia (or a request on the module's NATS
`web` subject) becomes an HTTP request to that site, and its response the `web_reply` frame (or
the NATS reply). glia decides which module serves which path (spec §2.4),
so the tree holds this module's resources only.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

from glia_python_host.reactor import settle

#: How long one web request to the module may take before the host answers 504.
WEB_TIMEOUT_S = 60.0


class WebServer:
    """The module's resources on `127.0.0.1:<port>`; none when it registered none."""

    def __init__(self, port: Any, url: str | None) -> None:
        self._port = port
        self._url = url

    @classmethod
    async def start(cls, resources: Mapping[str, Any]) -> WebServer:
        """Listens on a free loopback port, when the module registered resources."""
        if not resources:
            return cls(None, None)
        from synapse.util.httpresourcetree import create_resource_tree
        from twisted.internet import reactor
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        root = create_resource_tree(dict(resources), Resource())
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")  # type: ignore[attr-defined]
        return cls(port, f"http://127.0.0.1:{port.getHost().port}")

    async def serve(self, frame: Mapping[str, Any]) -> dict[str, Any]:
        """One `web` frame's request; returns the `web_reply` frame's fields."""
        if self._url is None:
            return web_error(404, "M_UNRECOGNIZED", "Unrecognized request")
        import treq

        query = frame.get("query") or ""
        url = self._url + str(frame.get("path") or "/") + (f"?{query}" if query else "")
        headers: dict[bytes, list[bytes]] = {}
        for name, value in frame.get("headers") or ():
            # treq sets the body's length itself; a second Content-Length makes Twisted's
            # server refuse the request (400), so a POST with a body never reached the module.
            if str(name).lower() not in ("content-length", "transfer-encoding"):
                headers.setdefault(str(name).encode(), []).append(str(value).encode())
        body = base64.b64decode(frame.get("body") or "")
        loop = asyncio.get_running_loop()
        try:
            response = await asyncio.wait_for(
                treq.request(str(frame.get("method") or "GET"), url, data=body or None, headers=headers).asFuture(loop),
                WEB_TIMEOUT_S,
            )
            content = await treq.content(response).asFuture(loop)
        except Exception as e:  # noqa: BLE001 - any failure is a 502 or 504
            timed_out = isinstance(e, asyncio.TimeoutError)
            return web_error(504 if timed_out else 502, "M_UNKNOWN", f"the module's resource failed: {e}")
        content_type = response.headers.getRawHeaders(b"Content-Type") or [b"application/octet-stream"]
        return {
            "status": response.code,
            "content_type": content_type[0].decode("latin-1"),
            "body": base64.b64encode(content).decode("ascii"),
        }

    async def stop(self) -> None:
        """Stops listening."""
        if self._port is not None:
            await settle(self._port.stopListening())


def web_error(status: int, errcode: str, error: str) -> dict[str, Any]:
    """A `WebCallResponse` in Matrix's error form, for a page the module could not give."""
    import json

    return {
        "status": status,
        "content_type": "application/json",
        "body": base64.b64encode(json.dumps({"errcode": errcode, "error": error}).encode()).decode("ascii"),
    }
