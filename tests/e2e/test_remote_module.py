"""A module served over NATS by another process: the Python example module
(deploy/examples/python-module/glia_remote_example.py), spoken to directly over the bus
protocol (docs/PROTOCOL.md), then behind glia on the NATS bus.

Needs nats-server on PATH (the test fails, never skips, when it is missing) and nats-py in the
venv (tests/e2e/setup.sh installs it).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import ROOT, Glia, NatsServer, Process, free_port, http_request, mxid, wait_until

try:
    import nats
    from nats.aio.client import Client as Nats
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeout
except ImportError as e:
    raise ImportError(f"{e}: nats-py is missing from the venv; run tests/e2e/setup.sh") from e

EXAMPLE = ROOT / "deploy" / "examples" / "python-module" / "glia_remote_example.py"
MODULE = "py_blocklist"
SUBJECT = f"glia.v1.module.{MODULE}"
BLOCKED_USER = mxid("spammer")
BLOCKED_SERVER = "evil.example"
#: The module's timeout in glia's config: a call with no worker must resolve well before it.
MODULE_TIMEOUT_S = 2


def remote_glia_config(port: int, nats_url: str) -> dict[str, Any]:
    """glia on the NATS bus with one module it does not host: the Python module serves it."""
    return {
        "listen": f"127.0.0.1:{port}",
        "bus": {"type": "nats", "url": nats_url},
        "modules": [
            {"module": "remote", "name": MODULE, "placement": "nats", "timeout": f"{MODULE_TIMEOUT_S}s"},
        ],
    }


# -- processes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """nats-server on loopback."""
    try:
        server = NatsServer.start(tmp_path_factory.mktemp("nats"))
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


@dataclass
class PythonModule:
    """The example module, running."""

    process: Process

    @classmethod
    def start(cls, nats_url: str, workdir: Path) -> PythonModule:
        """Starts it and waits until its subscription is in place."""
        argv = [sys.executable, str(EXAMPLE), "--name", MODULE, "--nats-url", nats_url]
        argv += ["--block-user", BLOCKED_USER, "--block-server", BLOCKED_SERVER]
        module = cls(Process(MODULE, argv, workdir / f"{MODULE}.log").start())
        wait_until(
            lambda: "serving module" in module.log() or not module.process.running(),
            15,
            "the Python module's start-up",
            module.process.tail,
        )
        if not module.process.running():
            raise RuntimeError(f"the Python module exited at start-up\n{module.process.tail()}")
        return module

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def python_module(nats_server: NatsServer, tmp_path: Path) -> Iterator[PythonModule]:
    """A fresh example module for each test."""
    module = PythonModule.start(nats_server.url, tmp_path)
    yield module
    module.stop()


# -- the bus protocol, from a test client ---------------------------------------------------


def invocation(callback: str, args: dict[str, Any], request_id: str = "req-1") -> tuple[bytes, dict[str, str]]:
    """An `Invocation` body and its headers, with a deadline 10 s away."""
    deadline_ms = int(time.time() * 1000) + 10_000
    body = {"request_id": request_id, "deadline_ms": deadline_ms, "callback": callback, "args": args}
    headers = {"Glia-Request-Id": request_id, "Glia-Deadline": str(deadline_ms)}
    return json.dumps(body).encode(), headers


def invite(inviter: str) -> dict[str, Any]:
    return {"inviter": inviter, "invitee": mxid("bob"), "room_id": "!room:localhost"}


def event(sender: str) -> dict[str, Any]:
    return {
        "event": {
            "type": "m.room.message",
            "sender": sender,
            "room_id": "!room:localhost",
            "event_id": "$event",
            "origin_server_ts": 1,
            "content": {"msgtype": "m.text", "body": "hello"},
        }
    }


async def ask(nc: Nats, callback: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    """Sends one request to the module's `callback` subject; returns the decoded reply."""
    reply = await nc.request(f"{SUBJECT}.{callback}", body, timeout=5, headers=headers)
    return json.loads(reply.data)


async def invoke(nc: Nats, callback: str, args: dict[str, Any], request_id: str = "req-1") -> Any:
    body, headers = invocation(callback, args, request_id)
    return await ask(nc, callback, body, headers)


def answered(request_id: str, callback: str, answer: Any) -> dict[str, Any]:
    """The `InvocationReply` carrying `answer`."""
    return {"request_id": request_id, "result": {"answer": {"callback": callback, "answer": answer}}}


async def barrier(nc: Nats) -> None:
    """Returns once nats-server has processed everything `nc` published before. (`nc.flush()`
    does not promise that: nats-py writes its PING ahead of publishes still buffered.)"""
    inbox = nc.new_inbox()
    echo = await nc.subscribe(inbox, max_msgs=1)
    await nc.publish(inbox, b"")
    await echo.next_msg(timeout=5)


def run(nats_url: str, scenario: Callable[[Nats], Awaitable[None]]) -> None:
    """Runs `scenario(nc)` with a connected client."""

    async def main() -> None:
        nc = await nats.connect(nats_url, allow_reconnect=False)
        try:
            await scenario(nc)
        finally:
            await nc.close()

    asyncio.run(main())


def test_describes_itself_in_its_queue_group(nats_server: NatsServer, python_module: PythonModule) -> None:
    async def scenario(nc: Nats) -> None:
        assert await ask(nc, "describe", b"") == {
            "callbacks": ["user_may_invite", "check_event_for_spam"],
            "auth_checkers": [],
            "web_resources": [],
        }

    run(nats_server.url, scenario)
    ours = [s for s in nats_server.subscriptions() if s["subject"].startswith(SUBJECT)]
    assert [(s["subject"], s.get("qgroup")) for s in ours] == [(f"{SUBJECT}.>", SUBJECT)]


def test_answers_in_synapse_vocabulary(nats_server: NatsServer, python_module: PythonModule) -> None:
    forbidden = {"errcode": "M_FORBIDDEN"}

    async def scenario(nc: Nats) -> None:
        cases = [
            ("user_may_invite", invite(BLOCKED_USER), forbidden),
            ("user_may_invite", invite(f"@anyone:{BLOCKED_SERVER}"), forbidden),
            ("user_may_invite", invite(mxid("alice")), "NOT_SPAM"),
            ("user_may_invite", invite(f"@anyone:not{BLOCKED_SERVER}"), "NOT_SPAM"),
            ("check_event_for_spam", event(BLOCKED_USER), forbidden),
            ("check_event_for_spam", event(f"@anyone:{BLOCKED_SERVER}"), forbidden),
            ("check_event_for_spam", event(mxid("alice")), "NOT_SPAM"),
        ]
        for i, (callback, args, answer) in enumerate(cases):
            request_id = f"req-{i}"
            assert await invoke(nc, callback, args, request_id) == answered(request_id, callback, answer), args

    run(nats_server.url, scenario)


def raw(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def body_of(callback: str, args: dict[str, Any]) -> bytes:
    return invocation(callback, args)[0]


MALFORMED: list[tuple[str, str, bytes, str]] = [
    # (case, callback subject, body, what the error message mentions)
    ("not json", "user_may_invite", b"{nope", "not JSON"),
    ("not an object", "user_may_invite", b"[1, 2]", "not a JSON object"),
    ("no request id", "user_may_invite", raw(callback="user_may_invite", args={}), "request_id"),
    ("no args", "user_may_invite", raw(request_id="r", deadline_ms=1, callback="user_may_invite"), "args"),
    ("subject differs", "user_may_invite", body_of("check_event_for_spam", event(mxid("alice"))), "callback"),
    ("no inviter", "user_may_invite", body_of("user_may_invite", {"invitee": "@b:x", "room_id": "!r:x"}), "inviter"),
    ("event not an object", "check_event_for_spam", body_of("check_event_for_spam", {"event": 3}), "event"),
    ("bad sender", "check_event_for_spam", body_of("check_event_for_spam", {"event": {"sender": 7}}), "event.sender"),
    ("not served", "user_may_join_room", body_of("user_may_join_room", {}), "does not serve"),
]


def readable_request_id(body: bytes, header: str) -> str:
    """The body's `request_id` when it has one, else the `Glia-Request-Id` header's."""
    try:
        request_id = json.loads(body).get("request_id")
    except (ValueError, AttributeError):
        return header
    return request_id if isinstance(request_id, str) else header


def test_malformed_invocations_get_a_typed_error(nats_server: NatsServer, python_module: PythonModule) -> None:
    async def scenario(nc: Nats) -> None:
        for name, callback, body, mentions in MALFORMED:
            reply = await ask(nc, callback, body, {"Glia-Request-Id": "from-header"})
            assert set(reply) == {"request_id", "result"}, (name, reply)
            assert reply["request_id"] == readable_request_id(body, "from-header"), (name, reply)
            error = reply["result"].get("error")
            assert error is not None and error["kind"] == "failed", (name, reply)
            assert mentions in error["message"], (name, reply)
        # A deadline header that is not a number is malformed too.
        body, headers = invocation("user_may_invite", invite(mxid("alice")))
        reply = await ask(nc, "user_may_invite", body, {**headers, "Glia-Deadline": "soon"})
        assert reply["result"]["error"]["kind"] == "failed" and "Glia-Deadline" in reply["result"]["error"]["message"]
        # ... and the module still serves.
        assert await invoke(nc, "user_may_invite", invite(mxid("alice"))) == answered(
            "req-1", "user_may_invite", "NOT_SPAM"
        )

    run(nats_server.url, scenario)
    assert python_module.process.running(), python_module.process.tail()


def test_drops_an_invocation_past_its_deadline(nats_server: NatsServer, python_module: PythonModule) -> None:
    async def scenario(nc: Nats) -> None:
        body, headers = invocation("user_may_invite", invite(BLOCKED_USER), "late")
        headers["Glia-Deadline"] = str(int(time.time() * 1000) - 1)
        # Subscribed but silent: a timeout, not "no responders".
        with pytest.raises(NatsTimeout):
            await nc.request(f"{SUBJECT}.user_may_invite", body, timeout=0.5, headers=headers)
        assert await invoke(nc, "user_may_invite", invite(BLOCKED_USER), "on-time") == answered(
            "on-time", "user_may_invite", {"errcode": "M_FORBIDDEN"}
        )

    run(nats_server.url, scenario)
    assert "deadline has passed" in python_module.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_drains_then_exits(nats_server: NatsServer, python_module: PythonModule, sig: signal.Signals) -> None:
    count = 2000

    async def scenario(nc: Nats) -> None:
        inbox = nc.new_inbox()
        replies = await nc.subscribe(inbox)
        for i in range(count):
            body, headers = invocation("user_may_invite", invite(mxid(f"u{i}")), f"req-{i}")
            await nc.publish(f"{SUBJECT}.user_may_invite", body, reply=inbox, headers=headers)
        # Once nats-server has routed every invocation to the module, stop it: the ones it
        # received must all be answered before it leaves.
        await barrier(nc)
        python_module.process.signal(sig)
        ids: set[str] = set()
        try:
            for _ in range(count):
                msg = await replies.next_msg(timeout=5)
                assert msg.data, f"no responders ({msg.headers}) for an invocation sent before the signal"
                reply = json.loads(msg.data)
                assert reply["result"] == {"answer": {"callback": "user_may_invite", "answer": "NOT_SPAM"}}, reply
                ids.add(reply["request_id"])
        except NatsTimeout:
            pass
        missing = {f"req-{i}" for i in range(count)} - ids
        assert not missing, f"{len(missing)} invocations unanswered\n{python_module.process.tail()}"
        popen = python_module.process.popen
        assert popen is not None
        assert popen.wait(10) == 0, python_module.process.tail()
        with pytest.raises(NoRespondersError):
            await nc.request(f"{SUBJECT}.describe", b"", timeout=2)

    run(nats_server.url, scenario)
    assert "drained" in python_module.log()


# -- behind glia ------------------------------------------------------------------------------


def test_glia_decides_with_the_python_module(
    glia_bin: Path, nats_server: NatsServer, python_module: PythonModule, tmp_path: Path
) -> None:
    port = free_port()
    glia = Glia.start(glia_bin, tmp_path, remote_glia_config(port, nats_server.url), port)
    try:

        def call(callback: str, args: dict[str, Any]) -> dict[str, Any]:
            status, _, body = http_request("POST", f"{glia.url}/_glia/v1/callbacks/{callback}", args)
            assert status == 200, f"{callback}: {status} {body!r}\n{glia.process.tail()}"
            return json.loads(body)

        for callback, args in [
            ("user_may_invite", invite(BLOCKED_USER)),
            ("user_may_invite", invite(f"@anyone:{BLOCKED_SERVER}")),
            ("check_event_for_spam", event(BLOCKED_USER)),
        ]:
            reply = call(callback, args)
            assert reply["decision"] == "deny", (args, reply)
            assert reply["errcode"] == "M_FORBIDDEN" and reply["module"] == MODULE, (args, reply)
        assert call("user_may_invite", invite(mxid("alice"))) == {"decision": "allow"}
        assert call("check_event_for_spam", event(mxid("alice"))) == {"decision": "allow"}

        # No worker left: user_may_invite's default policy is `error`, and it applies at once
        # (no responders), not after the module's timeout.
        python_module.stop()
        started = time.monotonic()
        reply = call("user_may_invite", invite(mxid("alice")))
        elapsed = time.monotonic() - started
        assert reply["decision"] == "error", reply
        assert "unavailable" in reply["error"].lower(), reply
        assert reply.get("module") == MODULE, reply
        assert elapsed < MODULE_TIMEOUT_S / 2, f"took {elapsed:.2f} s: waited for the timeout?"
    finally:
        glia.stop()
