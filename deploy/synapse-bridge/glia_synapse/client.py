"""Talking to glia's HTTP API.

Callbacks and the web-resource proxy go through Synapse's own HTTP client
(`ModuleApi.http_client`, connection-pooled, Synapse log contexts respected), each request
bounded by the bridge's timeout. The start-up discovery (`GET /_glia/v1/modules`) runs while
Synapse constructs modules, before its reactor serves anything, so it is a short blocking
stdlib request instead.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from synapse.api.errors import HttpResponseException
from synapse.module_api import make_deferred_yieldable, run_in_background
from twisted.internet import defer
from twisted.internet import reactor as default_reactor
from twisted.python.failure import Failure
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from glia_synapse.errors import GliaFailure
from glia_synapse.tracing import trace_headers

T = TypeVar("T")

CALLBACKS_PATH = "/_glia/v1/callbacks/"
MODULES_PATH = "/_glia/v1/modules"


@dataclass(frozen=True)
class RawResponse:
    """A proxied response: status, content type and body."""

    status: int
    content_type: bytes
    body: bytes


class GliaClient:
    """glia's API over Synapse's HTTP client."""

    def __init__(self, http_client: Any, base_url: str, token: str | None, reactor: Any = None) -> None:
        self._http = http_client
        self._base = base_url
        self._token = token
        self._reactor = reactor or default_reactor

    def _headers(self, request_id: str) -> dict[bytes, list[bytes]]:
        headers = {b"X-Request-Id": [request_id.encode()]}
        if self._token:
            headers[b"Authorization"] = [b"Bearer " + self._token.encode()]
        for name, value in trace_headers().items():
            headers[name.encode()] = [value.encode()]
        return headers

    async def call(self, callback: str, body: dict[str, Any], request_id: str, timeout: float) -> Any:
        """POSTs a callback's arguments; returns glia's decoded JSON reply.

        Raises `GliaFailure` when glia cannot be reached, does not answer within `timeout`
        seconds, answers a non-2xx status or anything but JSON.
        """
        url = self._base + CALLBACKS_PATH + callback
        return await self._bounded(
            lambda: self._http.post_json_get_json(url, body, headers=self._headers(request_id)),
            timeout,
            f"{callback} ({request_id})",
        )

    async def get_modules(self, timeout: float) -> dict[str, Any]:
        """`GET /_glia/v1/modules`."""
        headers = self._headers("bridge-discovery")
        return await self._bounded(
            lambda: self._http.get_json(self._base + MODULES_PATH, headers=headers), timeout, "module discovery"
        )

    async def proxy(
        self, method: bytes, path_and_query: bytes, body: bytes, headers: dict[bytes, list[bytes]], timeout: float
    ) -> RawResponse:
        """Sends one web request to glia as is and returns its response."""
        url = self._base + path_and_query.decode("ascii", "replace")

        async def send() -> RawResponse:
            response = await self._http.request(
                method.decode("ascii"), url, data=body or None, headers=Headers(headers)
            )
            content = await make_deferred_yieldable(readBody(response))
            content_type = response.headers.getRawHeaders(b"Content-Type") or [b"application/octet-stream"]
            return RawResponse(response.code, content_type[0], content)

        return await self._bounded(send, timeout, f"web request {path_and_query!r}")

    async def _bounded(self, start: Callable[[], Awaitable[T]], timeout: float, what: str) -> T:
        """Runs `start()` with a timeout (cancelling it on expiry), in Synapse's log
        context discipline; maps every failure to `GliaFailure`."""
        deferred = with_timeout(run_in_background(start), timeout, self._reactor)
        try:
            return await make_deferred_yieldable(deferred)
        except defer.TimeoutError as e:
            raise GliaFailure(f"glia did not answer {what} within {timeout:g} s", kind="timeout") from e
        except GliaFailure:
            raise
        except Exception as e:
            raise _failure(e, what) from e


def with_timeout(inner: defer.Deferred[T], timeout: float, reactor: Any) -> defer.Deferred[T]:
    """A Deferred with `inner`'s result, or failing with `TimeoutError` after `timeout`
    seconds, when `inner` is cancelled (and its late result, if any, dropped).

    `inner` is cancelled *before* the caller resumes, so its clean-up runs while the
    caller's Synapse request (and log context) is still alive. Unlike
    `Deferred.addTimeout`, the timeout fires even if cancelling `inner` does not make it
    fire at once.
    """
    outer: defer.Deferred[T] = defer.Deferred()
    expired = False

    def timed_out() -> Failure:
        return Failure(defer.TimeoutError(f"no answer within {timeout:g} s"))

    def expire() -> None:
        nonlocal expired
        expired = True
        inner.cancel()
        if not outer.called:
            outer.errback(timed_out())

    timer = reactor.callLater(timeout, expire)

    def settle(result: Any) -> None:
        if timer.active():
            timer.cancel()
        if outer.called:
            return None  # timed out already: drop the late result
        if expired:
            outer.errback(timed_out())  # the cancellation `expire` caused
        elif isinstance(result, Failure):
            outer.errback(result)
        else:
            outer.callback(result)
        return None

    inner.addBoth(settle)
    return outer


def _failure(error: Exception, what: str) -> GliaFailure:
    """A `GliaFailure` describing a transport error."""
    if isinstance(error, HttpResponseException):
        return GliaFailure(f"glia answered HTTP {error.code} to {what}: {_error_body(error)}", kind="http_error")
    if isinstance(error, ValueError):
        return GliaFailure(f"glia answered {what} with invalid JSON: {error}", kind="bad_reply")
    return GliaFailure(f"glia is unreachable for {what}: {type(error).__name__}: {error}", kind="unreachable")


def _error_body(error: Exception) -> str:
    body = getattr(error, "response", b"") or b""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return text[:300] or str(error)


def fetch_modules_blocking(base_url: str, token: str | None, timeout: float) -> dict[str, Any]:
    """`GET /_glia/v1/modules` with a blocking stdlib request (start-up only).

    Raises `GliaFailure` if glia does not answer it with JSON within `timeout` seconds.
    """
    request = urllib.request.Request(base_url + MODULES_PATH, headers={"X-Request-Id": "bridge-startup"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise GliaFailure(f"glia answered HTTP {e.code}: {e.read()[:300]!r}", kind="http_error") from e
    except (OSError, ValueError) as e:
        raise GliaFailure(f"glia is unreachable: {e}", kind="unreachable") from e
    if not isinstance(reply, dict):
        raise GliaFailure("glia's module list is not a JSON object", kind="bad_reply")
    return reply
