"""End to end: glia embedded in Synapse's process reaches modules placed elsewhere. One glia
config for both: `list_spam_checker` placed on NATS (a real nats-server and a `glia worker`
process), `demo` in Synapse's process, and a Python module (the scripted module) twice: in a
Python host the embedded glia starts itself, and in one the `glia worker` starts, on NATS. The
embedded coordinator asks them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import SERVER_NAME, NatsServer, Process, Synapse, embedded_module, mxid, wait_until
from hosting import ORACLE, python_path_env, python_section

#: What the scripted Python modules do: the one the embedded glia hosts refuses joins by users
#: named `banned...`; the one the worker hosts refuses events saying `forbidden-word`.
SCRIPT = {
    "pylocal": {
        "user_may_join_room": {
            "if": {"arg": "user_id", "contains": "banned"},
            "then": {"return": {"codes": "M_FORBIDDEN"}},
        },
    },
    "pynats": {
        "check_event_allowed": {
            "if": {"arg": "event.content.body", "contains": "forbidden-word"},
            "then": {"return": {"event_allowed": [False, None]}},
        },
    },
}


def scripted(name: str, workdir: Path, callback: str, **more: Any) -> dict[str, Any]:
    """A `modules:` entry for the scripted Python module `name`, serving `callback`."""
    config = {"name": name, "script": str(workdir / "script.json"), "calls": str(workdir / f"{name}.jsonl")}
    entry = {"module": "scripted_synapse.ScriptedModule", "name": name, "config": {**config, "callbacks": [callback]}}
    return {**entry, **more}


def config(nats_url: str, workdir: Path) -> dict[str, Any]:
    """The embedded coordinator's and the worker's config."""
    return {
        "bus": {"type": "nats", "url": nats_url},
        "python": python_section(SERVER_NAME),
        "modules": [
            {"module": "list_spam_checker", "placement": "nats", "config": {"evil_users": [mxid("spammer")]}},
            {"module": "demo", "config": {"denied_users": [mxid("evilguy")]}},
            scripted("pylocal", workdir, "user_may_join_room"),
            scripted("pynats", workdir, "check_event_allowed", placement="nats"),
        ],
    }


@pytest.fixture(scope="module")
def synapse(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    workdir = tmp_path_factory.mktemp("embedded-nats")
    started: list[Any] = []
    try:
        nats = NatsServer.start(workdir)
        started.append(nats)
        glia_file = workdir / "glia.yaml"
        (workdir / "script.json").write_text(json.dumps(SCRIPT))
        glia_file.write_text(yaml.safe_dump(config(nats.url, workdir), sort_keys=False))
        # The Python hosts import the scripted module from the oracle directory.
        env = python_path_env(ORACLE)
        argv = [str(glia_bin), "worker", "--config", str(glia_file)]
        worker = Process("glia-worker", argv, workdir / "worker.log", env=env)
        started.append(worker.start())
        wait_until(
            lambda: "serving" in worker.log_path.read_text(errors="replace") or not worker.running(),
            30,
            "worker start-up",
            worker.tail,
        )
        started.append(Synapse.start(workdir / "synapse", [embedded_module(glia_file)], env=env))
    except RuntimeError as e:
        for p in reversed(started):
            p.stop()
        pytest.fail(str(e), pytrace=False)
    yield started[-1]
    for p in reversed(started):
        p.stop()


def test_a_module_on_nats_and_one_in_process_both_decide(synapse: Synapse) -> None:
    alice, spammer, evilguy = (synapse.register(name) for name in ("alice", "spammer", "evilguy"))
    refused = evilguy.create_room()
    assert (refused.status, refused.errcode) == (403, "M_FORBIDDEN"), refused  # demo, in process
    room = alice.create_room(preset="public_chat")
    assert room.status == 200, room
    assert spammer.join(room.body["room_id"]).status == 200
    sent = spammer.send_text(room.body["room_id"], "hello")  # list_spam_checker, on the worker
    assert (sent.status, sent.errcode) == (403, "M_FORBIDDEN"), sent
    assert alice.send_text(room.body["room_id"], "hello").status == 200


def test_python_modules_hosted_beside_and_on_nats_both_decide(synapse: Synapse) -> None:
    alice, banned = synapse.register("alice2"), synapse.register("banned1")
    room = alice.create_room(preset="public_chat")
    assert room.status == 200, room
    room_id = room.body["room_id"]
    refused = banned.join(room_id)  # pylocal, in a host the embedded glia started
    assert (refused.status, refused.errcode) == (403, "M_FORBIDDEN"), refused
    denied = alice.send_text(room_id, "a forbidden-word here")  # pynats, in the worker's host
    assert (denied.status, denied.errcode) == (403, "M_FORBIDDEN"), denied
    assert alice.send_text(room_id, "fine").status == 200
