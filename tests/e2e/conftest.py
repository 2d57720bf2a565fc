"""Fixtures: one glia (seed modules), one censor service and one Synapse with the bridge,
shared by every end-to-end test of a module, and the users acting on them.

A missing prerequisite fails (never skips) with a message saying how to get it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

try:  # the venv's packages; without them, say how to get them
    import synapse

    import glia_synapse  # noqa: F401 - the bridge under test
except ImportError as e:
    raise pytest.UsageError(
        f"{e}: run the tests with tests/e2e/run.sh, which creates tests/e2e/.venv "
        "(matrix-synapse, pytest and the bridge) with tests/e2e/setup.sh"
    ) from e

from differential import Differential, start_differential
from harness import (
    CensorService,
    Client,
    Glia,
    Reply,
    Synapse,
    bridge_module,
    free_port,
    glia_binary,
    glia_config,
)

USERS = ("alice", "bob", "evilguy", "spammer", "mallory", "expired")


@pytest.fixture(scope="session")
def glia_bin() -> Path:
    """The glia binary under test."""
    try:
        return glia_binary()
    except RuntimeError as e:
        missing = str(e)
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def differential_world(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Differential]:
    """Synapse with the scripted modules, Synapse with the bridge and glia serving the same
    modules over NATS (see differential.py); shared by every differential test."""
    try:
        world = start_differential(glia_bin, tmp_path_factory.mktemp("differential"))
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield world
    world.stop()


@pytest.fixture
def diff(differential_world: Differential) -> Differential:
    """The differential world with an empty script and empty call logs."""
    differential_world.reset()
    return differential_world


@pytest.fixture(scope="module")
def censor() -> Iterator[CensorService]:
    """The event censorer's endpoint."""
    service = CensorService().start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def glia(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory, censor: CensorService) -> Iterator[Glia]:
    """glia with the seed modules, for server name `localhost`."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("glia")
    running = Glia.start(glia_bin, workdir, glia_config(port, censor.url), port)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def synapse(glia: Glia, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """A real Synapse on loopback with the bridge in `modules:`."""
    running = Synapse.start(tmp_path_factory.mktemp("synapse"), [bridge_module(glia.url)])
    yield running
    running.stop()


@dataclass
class World:
    """The running servers and the users acting on them."""

    glia: Glia
    synapse: Synapse
    censor: CensorService
    users: dict[str, Client]
    #: alice's public room, which bob and spammer have joined.
    room_id: str

    def __getattr__(self, name: str) -> Client:
        try:
            return self.users[name]
        except KeyError:
            raise AttributeError(name) from None

    def expect(self, reply: Reply, status: int, errcode: str | None = None) -> Reply:
        """Asserts `reply`'s status (and errcode), showing the server logs if not."""
        if reply.status != status or (errcode is not None and reply.errcode != errcode):
            pytest.fail(
                f"expected {status} {errcode or ''}, got {reply.status} {reply.body}\n"
                f"{self.synapse.process.tail()}\n"
                f"{_synapse_log_tail(self.synapse)}\n{self.glia.process.tail()}",
                pytrace=True,
            )
        return reply


def _synapse_log_tail(synapse: Synapse, lines: int = 60) -> str:
    return "--- Synapse log ---\n" + "\n".join(synapse.log().splitlines()[-lines:])


@pytest.fixture(scope="module")
def world(glia: Glia, synapse: Synapse, censor: CensorService) -> World:
    """Registered users and a shared room."""
    users = {name: synapse.register(name) for name in USERS}
    created = users["alice"].create_room(preset="public_chat", name="e2e")
    assert created.status == 200, created
    room_id = created.body["room_id"]
    for name in ("bob", "spammer"):
        joined = users[name].join(room_id)
        assert joined.status == 200, joined
    return World(glia, synapse, censor, users, room_id)
