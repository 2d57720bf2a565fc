"""A real Synapse whose bridge starts in bad conditions, as a process does in a rolling restart:

- glia is down when Synapse starts. The bridge registers every callback and its web resource
  prefix (`/_synapse/client`), keeps asking glia for its module list, and once glia answers
  behaves as a bridge that asked at start-up: a callback no glia module serves is answered as
  Synapse answers with no module (so room creation, joins and registration work through the
  next outage), and glia's web resources answer through Synapse. A reload or restart of glia
  (a new routing generation on a callback response) has it ask again.
- the bridge's ModuleApi port is taken. Synapse starts and serves clients without the channel,
  says so in its log, and the channel listens once the port is free.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import (
    GLIA_TOKEN,
    Client,
    Glia,
    Reply,
    Synapse,
    bridge_module,
    free_port,
    http_request,
    json_or_raw,
    mxid,
    wait_until,
)
from hosting import MODULE_API_SECRET, bridge_module_api

#: Seconds between the bridge's retries of glia's module list, in these tests.
RETRY_S = 1
EVIL_PATH = "/_synapse/client/list_spam_checker/is_evil"


def glia_modules(port: int, demo: bool = False) -> dict[str, Any]:
    """glia's config: `list_spam_checker` (check_event_for_spam and a web resource), and, with
    `demo`, the demo module, which refuses room creation to evilguy (user_may_create_room)."""
    modules: list[dict[str, Any]] = [{"module": "list_spam_checker", "config": {"evil_users": [mxid("spammer")]}}]
    if demo:
        modules.append({"module": "demo", "config": {"denied_users": [mxid("evilguy")]}})
    return {"listen": f"127.0.0.1:{port}", "auth_token": GLIA_TOKEN, "modules": modules}


@dataclass
class LateGlia:
    """A Synapse started while its glia was down, and that glia (stopped or running)."""

    glia: Glia
    synapse: Synapse

    def get(self, path: str) -> Reply:
        status, headers, body = http_request("GET", self.synapse.url + path)
        return Reply(status, json_or_raw(body), headers)

    def wait_for_log(self, text: str, after: int = 0, timeout: float = 20) -> None:
        """Waits until Synapse's log has `text` past its first `after` characters."""
        wait_until(lambda: text in self.synapse.log()[after:], timeout, f"Synapse logging {text!r}", self.describe)

    def describe(self) -> str:
        log = "\n".join(self.synapse.log().splitlines()[-60:])
        return f"--- Synapse log ---\n{log}\n{self.glia.process.tail()}"

    def reconfigure(self, demo: bool) -> None:
        self.glia.config_path.write_text(yaml.safe_dump(glia_modules(self.glia.port, demo), sort_keys=False))


@pytest.fixture(scope="module")
def late(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LateGlia]:
    port = free_port()
    glia = Glia.prepare(glia_bin, tmp_path_factory.mktemp("glia"), glia_modules(port), port)
    bridge = bridge_module(glia.url, web_resource_paths=[], discovery_retry_interval=RETRY_S)
    try:
        synapse = Synapse.start(tmp_path_factory.mktemp("synapse"), [bridge])
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield LateGlia(glia, synapse)
    finally:
        synapse.stop()
        glia.stop()


def expect(late: LateGlia, reply: Reply, status: int, errcode: str | None = None) -> Reply:
    if reply.status != status or (errcode is not None and reply.errcode != errcode):
        pytest.fail(f"expected {status} {errcode or ''}, got {reply.status} {reply.body}\n{late.describe()}")
    return reply


def test_a_synapse_started_while_glia_was_down_behaves_as_one_started_with_glia(late: LateGlia) -> None:
    # glia is down: every callback goes to glia and follows its failure mode
    # (check_registration_for_spam fails closed).
    expect(late, late.synapse.try_register("early"), 500)
    assert "is not reachable at start-up" in late.synapse.log()

    log_size = len(late.synapse.log())
    late.glia.restart()
    # glia's web resource answers through Synapse, below the bridge's default prefix ...
    spammer = {"user": mxid("spammer"), "is_evil": True}
    assert expect(late, late.get(f"{EVIL_PATH}?user={mxid('spammer')}"), 200).body == spammer
    # ... and within a few retries the bridge has glia's module list.
    late.wait_for_log("glia answers now", after=log_size, timeout=10 * RETRY_S)
    assert "no glia module serves" in late.synapse.log()[log_size:]
    alice, bob, spammer_client = (late.synapse.register(name) for name in ("alice", "bob", "spammer"))
    room = expect(late, alice.create_room(preset="public_chat"), 200).body["room_id"]
    expect(late, spammer_client.join(room), 200)
    expect(late, spammer_client.send_text(room, "spam"), 403, "M_FORBIDDEN")  # glia's module decides

    late.glia.stop()
    # glia is down again. What no glia module serves answers as in Synapse without a module:
    # registering, creating rooms, joining and inviting work (their callbacks fail closed).
    carol = late.synapse.register("carol")
    room = expect(late, carol.create_room(preset="public_chat"), 200).body["room_id"]
    for joining in (bob, spammer_client):
        expect(late, joining.join(room), 200)
    expect(late, carol.invite(room, mxid("alice")), 200)
    # check_event_for_spam, which a module serves, fails open.
    expect(late, spammer_client.send_text(room, "spam while glia is down"), 200)
    # glia's web resource: glia is unavailable; a path glia does not serve: Synapse's 404.
    expect(late, late.get(f"{EVIL_PATH}?user=x"), 502, "M_UNKNOWN")
    expect(late, late.get("/_synapse/client/list_spam_checker/nothing"), 404, "M_UNRECOGNIZED")
    # Synapse's own resources below the prefix are Synapse's.
    own = late.get("/_synapse/client/unsubscribe")
    assert own.status == 400, own  # UnsubscribeResource: "Missing string query parameter"


def test_a_new_generation_of_glia_has_the_bridge_ask_again(late: LateGlia) -> None:
    """glia restarted with the demo module (which serves user_may_create_room), then reloaded
    without it: each time, the first callback response naming the new generation has the
    bridge ask for glia's module list again."""
    evilguy = late.synapse.register("evilguy")
    dave = late.synapse.register("dave")
    room = expect(late, dave.create_room(), 200).body["room_id"]
    late.reconfigure(demo=True)
    late.glia.restart()
    log_size = len(late.synapse.log())
    expect(late, dave.send_text(room, "hello"), 200)  # check_event_for_spam names the generation
    late.wait_for_log("no glia module serves", after=log_size, timeout=10)  # fewer than before
    expect(late, evilguy.create_room(), 403, "M_FORBIDDEN")  # the demo module decides

    late.reconfigure(demo=False)
    status, _, raw = http_request(
        "POST", f"{late.glia.url}/_glia/v1/admin/reload", b"", {"Authorization": f"Bearer {GLIA_TOKEN}"}
    )
    assert status == 200, raw
    assert json.loads(raw)["stopped"] == ["demo"], raw
    log_size = len(late.synapse.log())
    expect(late, dave.send_text(room, "hello again"), 200)
    late.wait_for_log("no glia module serves", after=log_size, timeout=10)
    late.glia.stop()
    expect(late, evilguy.create_room(), 200)  # no module serves it: not failed closed


# -- the ModuleApi channel's port ---------------------------------------------------------------


def module_api_call(port: int, call: str, args: dict[str, Any]) -> tuple[int, Any]:
    status, _, body = http_request(
        "POST",
        f"http://127.0.0.1:{port}/_glia/v1/module_api/{call}",
        {"args": args},
        {"Authorization": f"Bearer {MODULE_API_SECRET}", "Content-Type": "application/json"},
        timeout=5,
    )
    return status, json_or_raw(body)


def test_a_taken_module_api_port_leaves_synapse_serving_and_the_channel_listens_once_it_is_free(
    glia_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    glia_port = free_port()
    glia = Glia.start(glia_bin, tmp_path_factory.mktemp("glia"), glia_modules(glia_port), glia_port)
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bridge = bridge_module(glia.url, module_api=bridge_module_api(port))
        try:
            synapse = Synapse.start(tmp_path_factory.mktemp("synapse"), [bridge])
        except RuntimeError as e:
            pytest.fail(str(e), pytrace=False)
        try:
            # Synapse serves its clients, with glia's modules deciding.
            alice: Client = synapse.register("alice")
            spammer = synapse.register("spammer")
            room = alice.create_room(preset="public_chat")
            assert room.status == 200, room
            assert spammer.join(room.body["room_id"]).status == 200
            assert spammer.send_text(room.body["room_id"], "spam").status == 403
            errors = [line for line in synapse.log().splitlines() if " ERROR " in line and "ModuleApi" in line]
            assert errors and f"cannot listen on 127.0.0.1:{port}" in errors[0], synapse.log()[-3000:]
            assert "Address already in use" in errors[0] and "fail" in errors[0]

            taken.close()
            # The bridge tries again after 5, 10, 20 and then every 30 s.
            answer: list[tuple[int, Any]] = []

            def listens() -> bool:
                try:
                    answer.append(module_api_call(port, "check_user_exists", {"user_id": mxid("alice")}))
                except OSError:
                    return False
                return True

            wait_until(listens, 45, "the ModuleApi channel listening", lambda: synapse.log()[-3000:])
            assert answer[-1] == (200, {"result": mxid("alice")})
            assert "the ModuleApi channel listens on" in synapse.log()
        finally:
            synapse.stop()
    finally:
        taken.close()
        glia.stop()
