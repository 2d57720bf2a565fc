#!/usr/bin/env python3
"""An example glia module in Python, served over NATS (glia bus protocol v1).

It refuses invites and events from blocked users or servers:

- ``user_may_invite``: ``{"errcode": "M_FORBIDDEN"}`` when the inviter or its server is
  blocked, else ``"NOT_SPAM"``;
- ``check_event_for_spam``: the same rule on the event's ``sender``.

Run it beside nats-server and a glia whose config names the module with ``placement: nats``::

    python3 glia_remote_example.py --block-user @spammer:example.com --block-server evil.example

Start as many copies as you like: they share one queue group, so NATS gives each invocation
to one of them. SIGTERM or SIGINT drains the subscription (invocations already received are
answered) and exits. The protocol is ``docs/PROTOCOL.md``; the JSON shapes are
``bus-schema/schema/glia-bus-v1.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

log = logging.getLogger("glia_remote_example")

SUBJECT_PREFIX = "glia.v1.module"
MODULE_NAME = re.compile(r"[A-Za-z0-9_-]+")

#: A Synapse spam-checker answer: ``"NOT_SPAM"`` or ``{"errcode": ...}``.
SpamAnswer = Any
Handler = Callable[[dict[str, Any]], SpamAnswer]

NOT_SPAM = "NOT_SPAM"


class MalformedInvocation(Exception):
    """The invocation is not what the protocol says; answered with a ``failed`` error."""


# -- the module: what it decides --------------------------------------------------------


class BlocklistModule:
    """Refuses invites and events from blocked user ids or server names."""

    def __init__(self, users: Iterable[str] = (), servers: Iterable[str] = ()) -> None:
        self.users = frozenset(users)
        self.servers = frozenset(servers)
        #: The callbacks this module serves, in the order its description lists them.
        self.handlers: dict[str, Handler] = {
            "user_may_invite": self.user_may_invite,
            "check_event_for_spam": self.check_event_for_spam,
        }

    def describe(self) -> dict[str, Any]:
        """The module's ``Description``: which callbacks glia should plan for it."""
        return {"callbacks": list(self.handlers), "auth_checkers": [], "web_resources": []}

    def is_blocked(self, user_id: str) -> bool:
        """Whether ``user_id`` (``@localpart:server``) or its server is blocked."""
        _, _, server = user_id.partition(":")
        return user_id in self.users or server in self.servers

    def verdict(self, user_id: str) -> SpamAnswer:
        return {"errcode": "M_FORBIDDEN"} if self.is_blocked(user_id) else NOT_SPAM

    def user_may_invite(self, args: dict[str, Any]) -> SpamAnswer:
        """``user_may_invite(inviter, invitee, room_id)``."""
        return self.verdict(string_field(args, "inviter"))

    def check_event_for_spam(self, args: dict[str, Any]) -> SpamAnswer:
        """``check_event_for_spam(event)``."""
        event = args.get("event")
        if not isinstance(event, dict):
            raise MalformedInvocation("field `event` is missing or not an object")
        return self.verdict(string_field(event, "sender", "event."))


def string_field(obj: dict[str, Any], key: str, path: str = "") -> str:
    """``obj[key]``, which must be a string."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedInvocation(f"field `{path}{key}` is missing or not a string")
    return value


# -- the protocol: how glia reaches it ------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def deadline_passed(msg: Msg) -> bool:
    """Whether the ``Glia-Deadline`` header (ms since the epoch) has passed: nobody waits for
    the answer any more. (The body's ``deadline_ms`` carries the same instant.)"""
    header = (msg.headers or {}).get("Glia-Deadline")
    if header is None:
        return False
    try:
        return int(header) <= now_ms()
    except ValueError:
        raise MalformedInvocation(f"header `Glia-Deadline` is not a number: {header!r}") from None


def decode(msg: Msg) -> dict[str, Any]:
    """The JSON object in ``msg``'s body."""
    try:
        body = json.loads(msg.data)
    except ValueError as e:
        raise MalformedInvocation(f"body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise MalformedInvocation("body is not a JSON object")
    return body


def answer(request_id: str, callback: str, value: SpamAnswer) -> dict[str, Any]:
    """An ``InvocationReply`` carrying an answer."""
    return {"request_id": request_id, "result": {"answer": {"callback": callback, "answer": value}}}


def failed(request_id: str, message: str) -> dict[str, Any]:
    """An ``InvocationReply`` carrying a ``failed`` error (an exception, in Synapse's terms)."""
    return {"request_id": request_id, "result": {"error": {"kind": "failed", "message": message}}}


class ModuleServer:
    """Serves one module on ``glia.v1.module.<name>.>`` in queue group ``glia.v1.module.<name>``."""

    def __init__(self, nc: Client, name: str, module: BlocklistModule) -> None:
        self.nc = nc
        self.name = name
        self.module = module
        self.queue = f"{SUBJECT_PREFIX}.{name}"

    async def start(self) -> None:
        """Subscribes, and returns once nats-server has the subscription."""
        await self.nc.subscribe(f"{self.queue}.>", queue=self.queue, cb=self.on_message)
        # Not `flush()`: nats-py writes its PING ahead of commands still buffered, the SUB
        # included. A request goes out after the SUB, so any answer proves the server has it.
        await self.nc.request(f"{self.queue}.describe", b"", timeout=5)

    async def on_message(self, msg: Msg) -> None:
        """One request: ``describe`` or an invocation."""
        if not msg.reply:
            log.warning("ignoring a message without a reply subject on %s", msg.subject)
            return
        callback = msg.subject.removeprefix(self.queue + ".")
        if callback == "describe":
            await self.reply(msg, self.module.describe())
            return
        request_id = (msg.headers or {}).get("Glia-Request-Id", "")
        try:
            if deadline_passed(msg):
                log.info("dropping %s (request %s): its deadline has passed", callback, request_id)
                return
            invocation = decode(msg)
            request_id = string_field(invocation, "request_id")
            if invocation.get("callback") != callback:
                raise MalformedInvocation(f"field `callback` is {invocation.get('callback')!r}, not {callback!r}")
            args = invocation.get("args")
            if not isinstance(args, dict):
                raise MalformedInvocation("field `args` is missing or not an object")
            handler = self.module.handlers.get(callback)
            if handler is None:
                raise MalformedInvocation(f"module {self.name} does not serve callback {callback!r}")
            reply = answer(request_id, callback, handler(args))
        except MalformedInvocation as e:
            log.warning("malformed %s invocation (request %s): %s", callback, request_id, e)
            reply = failed(request_id, f"malformed invocation: {e}")
        except Exception as e:  # a bug in a handler fails one invocation, not the worker
            log.exception("%s failed (request %s)", callback, request_id)
            reply = failed(request_id, f"{type(e).__name__}: {e}")
        await self.reply(msg, reply)

    async def reply(self, msg: Msg, body: dict[str, Any]) -> None:
        """Publishes ``body`` as JSON to the request's reply subject (``msg.respond`` would
        also echo the request's headers)."""
        await self.nc.publish(msg.reply, json.dumps(body).encode())


# -- running it -------------------------------------------------------------------------


async def serve(nats_url: str, name: str, module: BlocklistModule) -> None:
    """Serves ``module`` as ``name`` until SIGTERM or SIGINT, then drains and returns."""
    stop = asyncio.Event()

    async def on_error(e: Exception) -> None:
        log.error("NATS: %s", e)

    async def on_disconnected() -> None:
        if not stop.is_set():
            log.warning("disconnected from NATS; reconnecting")

    async def on_reconnected() -> None:
        log.info("reconnected to NATS")

    log.info("connecting to %s", nats_url)
    nc = await nats.connect(
        nats_url,
        name=f"glia-module-{name}",
        max_reconnect_attempts=-1,  # wait for NATS, at start-up and whenever it goes away
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    # Until now a signal simply ends the process: there is nothing to drain yet.
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    server = ModuleServer(nc, name, module)
    await server.start()
    log.info("serving module %s on %s.> (queue group %s)", name, server.queue, server.queue)
    await stop.wait()
    log.info("draining")
    await nc.drain()  # stops taking new messages, answers those received, then closes
    log.info("drained; bye")


def module_name(value: str) -> str:
    """argparse type: a module name as the NATS bus allows it."""
    if not MODULE_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError("a module name may contain only letters, digits, `_` and `-`")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", type=module_name, default="py_blocklist", help="module name (default: %(default)s)")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222", help="NATS server (default: %(default)s)")
    parser.add_argument(
        "--block-user", action="append", default=[], metavar="USER_ID", help="a user id to block (repeatable)"
    )
    parser.add_argument(
        "--block-server", action="append", default=[], metavar="SERVER", help="a server name to block (repeatable)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args.nats_url, args.name, BlocklistModule(args.block_user, args.block_server)))
    except KeyboardInterrupt:  # Ctrl-C before the connection was up
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
