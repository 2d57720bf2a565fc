"""The bridge's own HTTP/1.1 client to glia: kept-alive connections, framed by `h11`.

Synapse's `SimpleHttpClient` is general (Twisted's Agent, proxies, IP blacklists, an INFO log
line per request) and was most of a forwarded callback's cost inside Synapse. glia is one
known server, so this is a small client for it: one request at a time per connection, a pool
of idle connections per address (TCP, TLS, or a Unix socket when glia is local). `h11` (the
sans-IO HTTP/1.1 library) writes the requests and reads the responses (bodies framed by
`Content-Length`, chunked, or the connection's end); this module moves the bytes.

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

import h11
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


class BadRequest(ValueError):
    """The request cannot be sent as HTTP/1.1 (a method, target or header h11 refuses, such as
    one with a line break): it was not sent."""


@dataclass(frozen=True)
class Response:
    """One answer: status, lower-cased headers (last value wins) and body."""

    status: int
    headers: Mapping[bytes, bytes]
    body: bytes


class _Connection(protocol.Protocol):
    """One connection to glia, carrying one request at a time; `h11` frames both ways, one
    `h11.Connection` for the connection's life (a new cycle per kept-alive request)."""

    def __init__(self, pool: Pool, made: defer.Deferred[_Connection], direct: bool = False) -> None:
        self._pool = pool
        self._made = made
        #: Whether requests go straight to the socket (plain TCP or Unix; TLS goes through
        #: the transport, which encrypts).
        self._direct = direct
        self._http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._answer: defer.Deferred[Response] | None = None
        self._head: h11.Response | None = None
        self._body: list[bytes] = []
        self.idle_since = 0.0
        self.reusable = True
        self._socket: socket.socket | None = None

    def connectionMade(self) -> None:
        if self._direct:
            self._socket = getattr(self.transport, "socket", None)
        if not self._made.called:
            self._made.callback(self)

    def send(self, request: h11.Request, body: bytes) -> defer.Deferred[Response]:
        """Writes one request (its `Content-Length` matching `body`); the Deferred fires with
        its response."""
        http = self._http
        try:
            data = http.send(request)
            if body:
                data += http.send(h11.Data(data=body))
            http.send(h11.EndOfMessage())
        except h11.LocalProtocolError as e:  # not a request h11 can send now: nothing was written
            self._abort()
            return defer.fail(NotDelivered(f"cannot send the request: {e}"))
        self._answer = defer.Deferred(lambda _: self._abort())
        self._head = None
        self._body = []
        self._write(data)
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

    def _abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._answer is None:  # bytes nobody asked for: the connection is not usable
            self._abort()
            return
        self._http.receive_data(data)
        try:
            self._read()
        except h11.RemoteProtocolError as e:
            self._fail(Failure(BadResponse(str(e))))
            self._abort()

    def _read(self) -> None:
        """Takes the events h11 has parsed so far; the last one ends the answer."""
        http = self._http
        while True:
            event = http.next_event()
            kind = type(event)
            if kind is h11.Data:
                self._body.append(event.data)  # type: ignore[union-attr]
            elif kind is h11.Response:
                self._head = event  # type: ignore[assignment]
            elif kind is h11.EndOfMessage:
                self._finish()
                return
            elif kind is not h11.InformationalResponse:  # a 1xx is followed by the answer
                return  # NEED_DATA (PAUSED and ConnectionClosed cannot come before the end)

    def _finish(self) -> None:
        answer, self._answer = self._answer, None
        head = self._head
        assert head is not None
        http = self._http
        headers = {name.lower(): value for name, value in head.headers.raw_items()}
        response = Response(head.status_code, headers, b"".join(self._body))
        self._head, self._body = None, []
        # Reused only when both sides may go on (no `Connection: close`, not HTTP/1.0, a framed
        # body) and nothing came after the response (the connection would be out of step).
        if self.reusable and http.our_state is h11.DONE and http.their_state is h11.DONE and not http.trailing_data[0]:
            http.start_next_cycle()
        else:
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
        self._http.receive_data(b"")  # the end: a body delimited by it is complete
        with contextlib.suppress(h11.RemoteProtocolError):
            self._read()
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
        self._prefix = address.prefix.encode()
        self._host = address.host_header

    def request(
        self, method: bytes, path: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> defer.Deferred[Response]:
        """Sends one request on an idle connection or a new one.

        Fails with `NotDelivered` when no connection could be made, `MaybeDelivered` when
        the connection broke after the request was written, `BadResponse` when the answer
        is not HTTP, `BadRequest` (before any connection is used) when the request is not.
        """
        try:
            request = h11.Request(
                method=method,
                target=self._prefix + path,
                headers=[(b"Host", self._host), *headers, (b"Content-Length", b"%d" % len(body))],
            )
        except h11.LocalProtocolError as e:
            return defer.fail(BadRequest(str(e)))
        connection = self._take_idle()
        if connection is not None:
            return connection.send(request, body)
        made = self._connect()
        return made.addCallback(lambda c: c.send(request, body))

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
