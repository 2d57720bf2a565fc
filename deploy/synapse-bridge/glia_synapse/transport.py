"""The bridge's own HTTP/1.1 client to glia: kept-alive connections, minimal framing.

Synapse's `SimpleHttpClient` is general (Twisted's Agent, proxies, IP blacklists, an INFO log
line per request) and was most of a forwarded callback's cost inside Synapse. glia is one
known server, so this speaks just enough HTTP/1.1 to it: one request at a time per
connection, a pool of idle connections per address (TCP, TLS, or a Unix socket when glia is
local), bodies framed by `Content-Length`, chunked, or the connection's end. The framing is
written here rather than by a library: h11 (sans-IO, pure Python) was measured in its place and
made a forwarded callback cost Synapse about a third more (README, Benchmarks). As h11 does,
this refuses ambiguous framing (`BadResponse`): conflicting `Content-Length`s, a
`Transfer-Encoding` other than chunked, a malformed chunk, an unasked `101`
(`tests/e2e/test_bridge_transport.py` has a case for each).

Its failures say whether glia may have received the request (`NotDelivered` or
`MaybeDelivered`), which is what the failover decides a retry on. The Deferreds it returns do
not follow Synapse's log-context rules: callers wrap them in `logcontext.yieldable`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, protocol
from twisted.python.failure import Failure

#: Idle connections older than this are closed rather than reused: glia closes them after
#: its keep-alive (5 s), and a request sent just as glia closes would be lost with no way to
#: tell whether glia read it.
MAX_IDLE_SECONDS = 4.0
#: Idle connections kept per address; more are closed when released.
MAX_IDLE_CONNECTIONS = 32
#: Response heads larger than this are refused (glia's are a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"


@dataclass(frozen=True)
class Address:
    """Where one glia listens: `http://host:port`, `https://host:port` or `unix:/path`."""

    #: The URL as configured (for messages).
    url: str
    scheme: str
    host: str
    port: int
    #: The socket path, for `unix:`.
    path: str = ""
    #: The path prefix every request path is appended to (an http URL's path).
    prefix: str = ""

    @property
    def host_header(self) -> bytes:
        """The `Host` header glia is sent."""
        if self.scheme == "unix":
            return b"localhost"
        default = 443 if self.scheme == "https" else 80
        return (self.host if self.port == default else f"{self.host}:{self.port}").encode("idna")


def parse_address(url: str) -> Address:
    """Reads a glia URL: `http(s)://host[:port][/prefix]` or `unix:/path/to/socket`.

    Raises `ValueError` saying what is wrong.
    """
    if url.startswith("unix:"):
        path = url[len("unix:") :]
        path = "/" + path.lstrip("/") if path.startswith("//") else path
        if not path.startswith("/"):
            raise ValueError(f"{url!r}: expected unix:/absolute/path/to/socket")
        return Address(url, "unix", "", 0, path=path)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL or unix:/path")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: no query or fragment allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise ValueError(f"{url!r}: {e}") from None
    return Address(url, parts.scheme, parts.hostname, port, prefix=parts.path.rstrip("/"))


class NotDelivered(Exception):
    """The request certainly did not reach glia (no connection could be made)."""


class MaybeDelivered(Exception):
    """The request was sent, or partly sent, and no complete answer came: glia may have
    acted on it."""


class BadResponse(Exception):
    """glia answered something that is not an HTTP/1.1 response."""


@dataclass(frozen=True)
class Response:
    """One answer: status, lower-cased headers (last value wins) and body."""

    status: int
    headers: Mapping[bytes, bytes]
    body: bytes


class _Connection(protocol.Protocol):
    """One connection to glia, carrying one request at a time."""

    def __init__(self, pool: Pool, made: defer.Deferred[_Connection], direct: bool = False) -> None:
        self._pool = pool
        self._made = made
        #: Whether requests go straight to the socket (plain TCP or Unix; TLS goes through
        #: the transport, which encrypts).
        self._direct = direct
        self._buffer = bytearray()
        self._answer: defer.Deferred[Response] | None = None
        self._head: tuple[int, dict[bytes, bytes]] | None = None
        self._length: int | None = None  # body bytes still wanted; None: chunked or to the end
        self._chunked = False
        self._body = bytearray()
        self._no_body = False
        self.idle_since = 0.0
        self.reusable = True
        self._socket: socket.socket | None = None

    def connectionMade(self) -> None:
        if self._direct:
            self._socket = getattr(self.transport, "socket", None)
        if not self._made.called:
            self._made.callback(self)

    def send(self, request: bytes, head_only: bool) -> defer.Deferred[Response]:
        """Writes one request; the Deferred fires with its response."""
        self._answer = defer.Deferred(self._cancel)
        self._head, self._length, self._chunked, self._no_body = None, None, False, head_only
        self._buffer.clear()
        self._body.clear()
        self._write(request)
        return self._answer

    def _write(self, data: bytes) -> None:
        """Sends `data`: as much as the socket takes now, when nothing waits in the transport
        before it, and the rest through the transport. Twisted's own `write` only queues, and
        sends on the reactor's next turn: a turn (a poll and two epoll changes) per request."""
        assert self.transport is not None
        transport: Any = self.transport
        queued = getattr(transport, "dataBuffer", b"") or getattr(transport, "_tempDataBuffer", None)
        if self._socket is not None and not queued:
            # Full, or broken: the transport's write waits, or reports it.
            with contextlib.suppress(OSError):
                data = data[self._socket.send(data) :]
        if data:
            transport.write(data)

    def _cancel(self, answer: defer.Deferred[Response]) -> None:
        """A cancelled request (its attempt timed out): the Deferred has its answer, the
        cancellation, so the connection's end, reported on a later turn, must not answer it again."""
        if self._answer is answer:
            self._answer = None
        self._abort()

    def _abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._answer is None:  # bytes nobody asked for: the connection is not usable
            self._abort()
            return
        self._buffer += data
        try:
            self._parse()
        except BadResponse as e:
            self._fail(Failure(e))
            self._abort()

    def _parse(self) -> None:
        while self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise BadResponse("response head too large")
                return
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            self._read_head(head)  # no head kept after a 1xx: the answer's own follows
        if self._chunked:
            self._read_chunks()
        elif self._length is not None:
            take = min(self._length, len(self._buffer))
            self._body += self._buffer[:take]
            del self._buffer[:take]
            self._length -= take
            if self._length == 0:
                self._finish()
        else:  # to the connection's end
            self._body += self._buffer
            self._buffer.clear()

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise BadResponse(f"not an HTTP/1.1 status line: {lines[0][:100]!r}")
        status = int(parts[1])
        if status < 200:
            if status < 100 or status == 101:  # no status, or a switch nothing asked for
                raise BadResponse(f"unexpected status line: {lines[0][:100]!r}")
            return  # informational (100, 103): the answer follows
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise BadResponse(f"not a header line: {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
        if len(headers) < len(lines) - 1:  # a name repeated (rare): the length must be one
            lengths = {
                v.strip()
                for n, _, v in (line.partition(b":") for line in lines[1:])
                if n.strip().lower() == b"content-length"
            }
            if len(lengths) > 1:
                raise BadResponse("conflicting Content-Length headers")
        self._head = (status, headers)
        if headers.get(b"connection", b"").lower() == b"close" or parts[0] == b"HTTP/1.0":
            self.reusable = False
        if self._no_body or status in (204, 304):
            self._length = 0
        elif b"transfer-encoding" in headers:
            coding = headers[b"transfer-encoding"]
            if coding.lower() != b"chunked":  # a body this client could not decode
                raise BadResponse(f"unsupported Transfer-Encoding {coding[:50]!r}")
            self._chunked = True
        elif b"content-length" in headers:
            length = headers[b"content-length"]
            if not length.isdigit():
                raise BadResponse(f"bad Content-Length {length[:50]!r}")
            self._length = int(length)
        else:
            self.reusable = False  # the body ends with the connection

    def _read_chunks(self) -> None:
        while self._answer is not None:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return
            size_text = bytes(self._buffer[:line_end]).split(b";", 1)[0].strip()
            if not size_text or size_text.strip(_HEX_DIGITS):  # int() would take "-1", "0x1", "1_0"
                raise BadResponse(f"bad chunk size {size_text[:50]!r}")
            size = int(size_text, 16)
            if size == 0:  # the last chunk; trailers (none from glia) end with an empty line
                end = self._buffer.find(b"\r\n\r\n", line_end)
                if end < 0:
                    return
                del self._buffer[: end + 4]
                self._finish()
                return
            start = line_end + 2
            if len(self._buffer) < start + size + 2:
                return
            if self._buffer[start + size : start + size + 2] != b"\r\n":
                raise BadResponse("a chunk's data is not followed by CRLF")
            self._body += self._buffer[start : start + size]
            del self._buffer[: start + size + 2]

    def _finish(self) -> None:
        answer, self._answer = self._answer, None
        assert self._head is not None
        status, headers = self._head
        response = Response(status, headers, bytes(self._body))
        if self._buffer:  # more than the response: the connection is out of step
            self.reusable = False
        self._pool.release(self)
        if answer is not None:
            answer.callback(response)

    def _fail(self, failure: Failure) -> None:
        answer, self._answer = self._answer, None
        if answer is not None:
            answer.errback(failure)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.reusable = False
        self._pool.forget(self)
        if self._answer is None:
            return
        if self._head is not None and self._length is None and not self._chunked:
            self._finish()  # a body delimited by the connection's end
        else:
            self._fail(Failure(MaybeDelivered(f"connection lost before the answer: {reason.getErrorMessage()}")))


class _Factory(protocol.ClientFactory):
    """Makes one connection; `made` fires with it once it is up, or with `NotDelivered`."""

    def __init__(self, pool: Pool, direct: bool) -> None:
        self.pool = pool
        self.direct = direct
        self.made: defer.Deferred[_Connection] = defer.Deferred()

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self.pool, self.made, self.direct)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.made.called:
            self.made.errback(Failure(NotDelivered(reason.getErrorMessage())))

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        if not self.made.called:
            self.made.errback(Failure(NotDelivered(reason.getErrorMessage())))


class Pool:
    """Connections to one glia address: idle ones are reused, newest first."""

    def __init__(self, address: Address, reactor: Any, connect_timeout: float) -> None:
        self.address = address
        self._reactor = reactor
        self._connect_timeout = connect_timeout
        self._idle: list[_Connection] = []

    def request(
        self, method: bytes, path: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> defer.Deferred[Response]:
        """Sends one request on an idle connection or a new one.

        Fails with `NotDelivered` when no connection could be made, `MaybeDelivered` when
        the connection broke after the request was written, `BadResponse` when the answer
        is not HTTP.
        """
        lines = [method, b" ", self.address.prefix.encode() + path, b" HTTP/1.1\r\nHost: ", self.address.host_header]
        for name, value in headers:
            lines += [b"\r\n", name, b": ", value]
        lines += [b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n\r\n", body]
        request = b"".join(lines)
        head_only = method == b"HEAD"
        connection = self._take_idle()
        if connection is not None:
            return connection.send(request, head_only)
        made = self._connect()
        return made.addCallback(lambda c: c.send(request, head_only))

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable and now - connection.idle_since < MAX_IDLE_SECONDS:
                return connection
            connection._abort()
        return None

    def _connect(self) -> defer.Deferred[_Connection]:
        a = self.address
        factory = _Factory(self, direct=a.scheme != "https")
        if a.scheme == "unix":
            self._reactor.connectUNIX(a.path, factory, timeout=self._connect_timeout)
        elif a.scheme == "https":
            from twisted.internet.ssl import optionsForClientTLS

            self._reactor.connectSSL(
                a.host, a.port, factory, optionsForClientTLS(a.host), timeout=self._connect_timeout
            )
        else:
            self._reactor.connectTCP(a.host, a.port, factory, timeout=self._connect_timeout)
        return factory.made

    def release(self, connection: _Connection) -> None:
        """Takes a connection back after its answer: kept idle, or closed."""
        if connection.reusable and len(self._idle) < MAX_IDLE_CONNECTIONS:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection._abort()

    def forget(self, connection: _Connection) -> None:
        """Drops a closed connection from the idle ones."""
        if connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        """Closes every idle connection."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection._abort()
