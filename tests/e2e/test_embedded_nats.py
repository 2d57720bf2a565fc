"""End to end: glia embedded in Synapse's process reaches modules placed elsewhere. One glia
config for both: `list_spam_checker` placed on NATS (a real nats-server and a `glia worker`
process), `demo` in Synapse's process; the embedded coordinator asks both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import NatsServer, Process, Synapse, embedded_module, mxid, wait_until


def config(nats_url: str) -> dict[str, Any]:
    """The embedded coordinator's and the worker's config."""
    return {
        "bus": {"type": "nats", "url": nats_url},
        "modules": [
            {"module": "list_spam_checker", "placement": "nats", "config": {"evil_users": [mxid("spammer")]}},
            {"module": "demo", "config": {"denied_users": [mxid("evilguy")]}},
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
        glia_file.write_text(yaml.safe_dump(config(nats.url), sort_keys=False))
        worker = Process("glia-worker", [str(glia_bin), "worker", "--config", str(glia_file)], workdir / "worker.log")
        started.append(worker.start())
        wait_until(
            lambda: "serving" in worker.log_path.read_text(errors="replace") or not worker.running(),
            30,
            "worker start-up",
            worker.tail,
        )
        started.append(Synapse.start(workdir / "synapse", [embedded_module(glia_file)]))
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
