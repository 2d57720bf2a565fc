"""Serving glia's module web resources on Synapse's port, by proxying.

Synapse takes web resources only while it starts (`ModuleApi.register_web_resource`), but
glia's list of resources is known only once glia answers, which may be later (a Synapse
process started while glia was down) and may change (a reload of glia's config). So the
bridge registers a `GliaWebResource` at each of its `web_resource_prefixes` (default
`/_synapse/client`) and at each path it knows at start-up outside them, and each one decides
per request, from glia's last listing (`WebRoutes`), whether glia serves the path:

- glia serves it: the request is proxied. The method, path, query, body and headers (minus
  hop-by-hop ones and the client's credentials) go to glia unchanged; glia's status, content
  type and body come back;
- glia does not serve it: the 404 Synapse's resource tree would answer if glia's resources
  were registered in it as a module's are (`WebRoutes.answer`): Twisted's "No Such Resource"
  page below one of glia's exact paths (a module's resource is not a leaf), Synapse's JSON
  `M_UNRECOGNIZED` elsewhere (its placeholder resources on the way to a module's path);
- glia has not answered yet: the request is proxied, and glia decides (502 while it cannot
  be reached).

A path is served as glia serves it (its `routes.rs`): exactly, or with every path below it
for the paths glia lists as subtrees. A `GliaWebResource` is not a Twisted leaf: the
resources Synapse itself (or another module) attached below its path are its static children,
which Twisted consults before asking it, so a prefix never hides them; only the paths nothing
else serves reach it (`getChild`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from synapse.http.server import UnrecognizedRequestResource
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


def segments(path: str) -> tuple[bytes, ...]:
    """A registered path's segments, as Synapse's `create_resource_tree` splits it."""
    return tuple(part.encode() for part in path.split("/")[1:])


#: `WebRoutes.answer`: glia serves the path; Twisted's "No Such Resource" page (the path is
#: below one of glia's exact paths); Synapse's `M_UNRECOGNIZED` (anywhere else).
GLIA, NO_RESOURCE, UNRECOGNIZED = "glia", "no_resource", "unrecognized"


class WebRoutes:
    """The web resources glia listed last: which request paths it serves, and what Synapse's
    resource tree answers the others."""

    def __init__(self) -> None:
        #: Path segments to whether the path is a subtree; None until glia has answered.
        self._routes: dict[tuple[bytes, ...], bool] | None = None
        #: The paths on the way to glia's paths (Synapse's placeholders there).
        self._ancestors: frozenset[tuple[bytes, ...]] = frozenset()

    def update(self, paths: Iterable[str], subtrees: Iterable[str]) -> None:
        """Takes glia's listing: its paths, and those of them that are subtrees."""
        below = set(subtrees)
        routes = {segments(path): path in below for path in paths}
        self._ancestors = frozenset(path[:depth] for path in routes for depth in range(1, len(path)))
        self._routes = routes

    def answer(self, requested: Sequence[bytes]) -> str | None:
        """Who answers the request path whose (unquoted) segments are `requested`: `GLIA`
        where glia's router serves it (the path itself, or a subtree on the way to it), else
        the 404 of Synapse's resource tree with glia's paths in it, as Twisted walks it: past
        one of glia's exact paths, its resource's default child (`NO_RESOURCE`); past a
        placeholder, or off the tree, `UNRECOGNIZED`. None: glia has not listed them yet."""
        routes = self._routes
        if routes is None:
            return None
        at_glias_resource = False
        for depth in range(1, len(requested) + 1):
            path = tuple(requested[:depth])
            subtree = routes.get(path)
            if subtree is not None:
                if subtree or depth == len(requested):
                    return GLIA
                at_glias_resource = True
            elif path in self._ancestors:
                at_glias_resource = False
            else:
                return NO_RESOURCE if at_glias_resource else UNRECOGNIZED
        return UNRECOGNIZED


class GliaWebResource(Resource):
    """glia's web resources at and below its path, as `WebRoutes` says (see the module doc)."""

    def __init__(self, client: GliaClient, timeout: float, routes: WebRoutes) -> None:
        super().__init__()
        self._client = client
        self._timeout = timeout
        self._routes = routes
        self._below = _Below(self)

    def getChild(self, path: bytes, request: Any) -> Resource:
        """Every path below this one that no static child (Synapse's own) takes."""
        return self._below

    def render(self, request: Any) -> Any:
        """Proxies the request, or answers Synapse's 404 for a path glia does not serve."""
        answer = self._routes.answer([*request.prepath, *request.postpath])
        if answer == UNRECOGNIZED:
            return UnrecognizedRequestResource().render(request)
        if answer == NO_RESOURCE:
            return Resource.getChild(self, b"", request).render(request)  # Twisted's default child
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


class _Below(Resource):
    """The paths below a `GliaWebResource`, answered by it (a leaf: Twisted looks no further)."""

    isLeaf = True

    def __init__(self, owner: GliaWebResource) -> None:
        super().__init__()
        self._owner = owner

    def render(self, request: Any) -> Any:
        return self._owner.render(request)


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
