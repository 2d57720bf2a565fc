"""Serving glia's module web resources on Synapse's port, by proxying.

One `GliaWebProxy` is registered (with `ModuleApi.register_web_resource`) for each path glia
serves. Like glia's resource, it answers exactly its path (Synapse's resource tree then
answers 404 for the paths below it), unless glia lists the path as a subtree: then it is a
Twisted leaf and answers everything below its path too. The method, path, query, body and
headers (minus hop-by-hop ones and the client's credentials) go to glia unchanged; glia's
status, content type and body come back.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import run_in_background
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from glia_synapse.client import GliaClient, RawResponse
from glia_synapse.errors import GliaFailure
from glia_synapse.tracing import new_request_id, trace_headers

logger = logging.getLogger(__name__)

#: Request headers never forwarded: hop-by-hop ones, the ones the HTTP client sets itself,
#: and the client's credentials for Synapse (glia's resources do not authenticate users).
DROPPED_HEADERS = {
    b"connection",
    b"keep-alive",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"content-length",
    b"authorization",
    b"cookie",
}


class GliaWebProxy(Resource):
    """Proxies the requests for its path (and, as a subtree, the paths below it) to glia."""

    def __init__(self, client: GliaClient, timeout: float, subtree: bool = False) -> None:
        super().__init__()
        self._client = client
        self._timeout = timeout
        #: Twisted hands a leaf every path below it; otherwise it looks for children.
        self.isLeaf = subtree

    def render(self, request: Any) -> Any:
        """Starts the proxied request; the response is written when glia answers."""
        run_in_background(self._proxy, request)
        return NOT_DONE_YET

    async def _proxy(self, request: Any) -> None:
        request_id = new_request_id()
        headers = forwarded_headers(request, request_id)
        body = request.content.read() if request.content is not None else b""
        try:
            response = await self._client.proxy(request.method, request.uri, body, headers, self._timeout)
        except GliaFailure as e:
            logger.warning("glia web resource %s failed (%s): %s", request.path, request_id, e)
            response = RawResponse(
                502,
                b"application/json",
                b'{"errcode":"M_UNKNOWN","error":"The module runtime (glia) is unavailable"}',
            )
        write_response(request, response)


def forwarded_headers(request: Any, request_id: str) -> dict[bytes, list[bytes]]:
    """The client's headers to send on to glia, plus `X-Request-Id`, the trace context and
    `X-Forwarded-For`."""
    headers = {
        name: list(values)
        for name, values in request.requestHeaders.getAllRawHeaders()
        if name.lower() not in DROPPED_HEADERS
    }
    headers[b"X-Request-Id"] = [request_id.encode()]
    for name, value in trace_headers().items():
        headers[name.encode()] = [value.encode()]
    client_ip = request.getClientAddress()
    if getattr(client_ip, "host", None):
        headers[b"X-Forwarded-For"] = [client_ip.host.encode()]
    return headers


def write_response(request: Any, response: RawResponse) -> None:
    """Writes glia's answer to the client, unless the client has gone."""
    if getattr(request, "_disconnected", False) or request.finished:
        return
    request.setResponseCode(response.status)
    request.setHeader(b"Content-Type", response.content_type)
    request.setHeader(b"Content-Length", str(len(response.body)).encode())
    if request.method != b"HEAD":
        request.write(response.body)
    request.finish()
