"""Talking to glia's HTTP API.

Callbacks, the web-resource proxy and the late discovery go through the bridge's own
HTTP/1.1 client (`transport`, or Synapse's with `transport: synapse`), across the configured
coordinators (`failover`), each exchange bounded by the bridge's timeout (every attempt ends
by its deadline) and run in Synapse's log-context discipline. The start-up discovery
(`GET /_glia/v1/modules`) runs while Synapse constructs modules, before its reactor serves
anything, so it is a short blocking stdlib request instead.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet import reactor as default_reactor

from glia_synapse.errors import GliaFailure
from glia_synapse.failover import Coordinators
from glia_synapse.tracing import trace_headers
from glia_synapse.transport import Address, Pool, Response

CALLBACKS_PATH = "/_glia/v1/callbacks/"
MODULES_PATH = "/_glia/v1/modules"
JSON = b"application/json"
#: glia's routing generation on a callback response (lower case, as `Response` keeps names).
GENERATION_HEADER = b"glia-generation"

__all__ = ["GliaClient", "RawResponse", "fetch_modules_blocking"]

try:  # Synapse's encoder takes its immutable dicts (event content)
    from synapse.util.json import json_encoder
except ImportError:  # Synapse before 1.136
    from synapse.util import json_encoder  # type: ignore[attr-defined,no-redef]


@dataclass(frozen=True)
class RawResponse:
    """A proxied response: status, content type and body."""

    status: int
    content_type: bytes
    body: bytes


class GliaClient:
    """glia's API across the configured coordinators."""

    def __init__(
        self,
        pools: Sequence[Any],
        token: str | None,
        reactor: Any = None,
        attempt_timeout: float | None = None,
    ) -> None:
        self._reactor = reactor or default_reactor
        self._coordinators = Coordinators(pools, self._reactor, attempt_timeout)
        self._token = token
        self._auth = b"Bearer " + token.encode() if token else None

    @classmethod
    def lean(
        cls,
        addresses: Sequence[Address],
        token: str | None,
        connect_timeout: float,
        attempt_timeout: float | None = None,
        reactor: Any = None,
    ) -> GliaClient:
        """A client over the bridge's own transport."""
        reactor = reactor or default_reactor
        return cls([Pool(a, reactor, connect_timeout) for a in addresses], token, reactor, attempt_timeout)

    def _headers(self, request_id: str) -> list[tuple[bytes, bytes]]:
        headers = [(b"X-Request-Id", request_id.encode())]
        if self._auth:
            headers.append((b"Authorization", self._auth))
        for name, value in trace_headers().items():
            headers.append((name.encode(), value.encode()))
        return headers

    async def call(
        self, callback: str, body: dict[str, Any], request_id: str, timeout: float, retry_safe: bool = True
    ) -> tuple[Any, str | None]:
        """POSTs a callback's arguments; returns glia's decoded JSON reply and the
        generation of glia's routing its response named (`Glia-Generation`; None without).

        `retry_safe`: whether the request may go to another coordinator after one may have
        received it (a decision), or not (a notification). Raises `GliaFailure` when no
        coordinator can be reached, none answers within `timeout` seconds, or glia answers a
        non-2xx status or anything but JSON.
        """
        headers = self._headers(request_id)
        headers.append((b"Content-Type", JSON))
        payload = json_encoder.encode(body).encode()
        what = f"{callback} ({request_id})"
        response = await self._exchange(
            b"POST", (CALLBACKS_PATH + callback).encode(), headers, payload, timeout, retry_safe, what
        )
        generation = response.headers.get(GENERATION_HEADER)
        return _json(response, what), generation.decode("ascii", "replace") if generation is not None else None

    async def get_modules(self, timeout: float) -> dict[str, Any]:
        """`GET /_glia/v1/modules`."""
        what = "module discovery"
        response = await self._exchange(
            b"GET", MODULES_PATH.encode(), self._headers("bridge-discovery"), b"", timeout, True, what
        )
        reply = _json(response, what)
        if not isinstance(reply, dict):
            raise GliaFailure("glia's module list is not a JSON object", kind="bad_reply")
        return reply

    async def proxy(
        self, method: bytes, path_and_query: bytes, body: bytes, headers: dict[bytes, list[bytes]], timeout: float
    ) -> RawResponse:
        """Sends one web request to glia as is and returns its response. Only reads
        (`GET`, `HEAD`) move to another coordinator once one may have received them."""
        pairs = [(name, value) for name, values in headers.items() for value in values]
        if body and not any(name.lower() == b"content-type" for name, _ in pairs):
            pairs.append((b"Content-Type", b"application/octet-stream"))
        response = await self._exchange(
            method,
            path_and_query,
            pairs,
            body,
            timeout,
            method in (b"GET", b"HEAD"),
            f"web request {path_and_query!r}",
            refused_status=None,
        )
        content_type = response.headers.get(b"content-type", b"application/octet-stream")
        return RawResponse(response.status, content_type, response.body)

    async def _exchange(
        self,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
        retry_safe: bool,
        what: str,
        refused_status: int | None = 503,
    ) -> Response:
        """One request across the coordinators, by `timeout` seconds from now; every failure
        becomes a `GliaFailure`."""
        deadline = time.monotonic() + timeout
        try:
            return await self._coordinators.request(method, path, headers, body, deadline, retry_safe, refused_status)
        except defer.TimeoutError as e:
            raise GliaFailure(f"glia did not answer {what} within {timeout:g} s", kind="timeout") from e
        except GliaFailure:
            raise
        except Exception as e:
            raise GliaFailure(f"glia is unreachable for {what}: {type(e).__name__}: {e}", kind="unreachable") from e


def _json(response: Response, what: str) -> Any:
    """A 2xx response's JSON body; `GliaFailure` otherwise."""
    if not 200 <= response.status < 300:
        text = response.body[:300].decode("utf-8", "replace")
        raise GliaFailure(f"glia answered HTTP {response.status} to {what}: {text}", kind="http_error")
    try:
        return json.loads(response.body)
    except ValueError as e:
        raise GliaFailure(f"glia answered {what} with invalid JSON: {e}", kind="bad_reply") from e


class _UnixConnection(http.client.HTTPConnection):
    """`http.client` over a Unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _blocking_connection(address: Address, timeout: float) -> http.client.HTTPConnection:
    if address.scheme == "unix":
        return _UnixConnection(address.path, timeout)
    if address.scheme == "https":
        return http.client.HTTPSConnection(address.host, address.port, timeout=timeout)
    return http.client.HTTPConnection(address.host, address.port, timeout=timeout)


def fetch_modules_blocking(addresses: Sequence[Address], token: str | None, timeout: float) -> dict[str, Any]:
    """`GET /_glia/v1/modules` with a blocking stdlib request (start-up only), from the
    first coordinator that answers.

    Raises `GliaFailure` if none answers it with JSON within `timeout` seconds each.
    """
    headers = {"X-Request-Id": "bridge-startup"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    failures = []
    for address in addresses:
        connection = _blocking_connection(address, timeout)
        try:
            connection.request("GET", address.prefix + MODULES_PATH, headers=headers)
            response = connection.getresponse()
            status, body = response.status, response.read()
        except OSError as e:
            failures.append(f"{address.url}: {e}")
            continue
        finally:
            connection.close()
        if status != 200:
            raise GliaFailure(f"glia at {address.url} answered HTTP {status}: {body[:300]!r}", kind="http_error")
        try:
            reply = json.loads(body)
        except ValueError as e:
            raise GliaFailure(f"glia at {address.url} answered invalid JSON: {e}", kind="bad_reply") from e
        if not isinstance(reply, dict):
            raise GliaFailure("glia's module list is not a JSON object", kind="bad_reply")
        return reply
    raise GliaFailure(f"glia is unreachable: {'; '.join(failures)}", kind="unreachable")
