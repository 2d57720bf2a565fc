"""The bridge's former transport, Synapse's own HTTP client (`ModuleApi.http_client`), behind
the same interface as `transport.Pool`: kept as `transport: synapse` for comparison (the
benchmark measures both) and for setups that rely on what Synapse's client adds."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from synapse.module_api import make_deferred_yieldable, run_in_background
from twisted.internet import defer
from twisted.internet.error import ConnectError
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from glia_synapse.transport import Address, MaybeDelivered, NotDelivered, Response


class SynapseHttpPool:
    """Requests to one glia address through Synapse's `SimpleHttpClient`."""

    def __init__(self, address: Address, http_client: Any) -> None:
        if address.scheme == "unix":
            raise ValueError(f"{address.url}: Synapse's HTTP client cannot reach a Unix socket")
        self.address = address
        self._http = http_client
        self._base = f"{address.scheme}://{address.host_header.decode()}{address.prefix}"

    def request(
        self, method: bytes, path: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> defer.Deferred[Response]:
        """As `transport.Pool.request` (a Deferred following Synapse's log-context rules)."""
        grouped: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            grouped.setdefault(name, []).append(value)
        url = self._base + path.decode("ascii", "replace")
        return run_in_background(self._send, method.decode("ascii"), url, body, Headers(grouped))

    async def _send(self, method: str, url: str, body: bytes, headers: Headers) -> Response:
        try:
            response = await self._http.request(method, url, data=body or None, headers=headers)
        except ConnectError as e:
            raise NotDelivered(str(e)) from e
        except defer.CancelledError:
            raise
        except Exception as e:
            raise MaybeDelivered(f"{type(e).__name__}: {e}") from e
        try:
            content = await make_deferred_yieldable(readBody(response))
        except defer.CancelledError:
            raise
        except Exception as e:
            raise MaybeDelivered(f"reading the answer: {type(e).__name__}: {e}") from e
        names = {name.lower(): values[-1] for name, values in response.headers.getAllRawHeaders()}
        return Response(response.code, names, content)

    def close(self) -> None:
        """Nothing to close: Synapse's client owns its connections."""
