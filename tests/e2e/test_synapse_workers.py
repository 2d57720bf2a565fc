"""Synapse with workers (issue 22 item 1): Synapse 1.163.2 as a main process and two generic
workers on Postgres and Redis, both workers event persisters (Synapse shares rooms out
between them), the bridge in every process's `modules:`, one glia serving the seed modules
and a hosted module that writes down each event `on_new_event` hands it (`oracle/new_event_log.py`).

Synapse calls `on_new_event` in the process that persisted the event and again in every other
process that hears of it over replication. The bridge forwards it from the persister only
(`notifications: once`, the default), so glia's module sees each event once, whichever
process the client sent it through. A second bridge in every process, set to
`notifications: every_process` and pointed at a second glia with the same hosted module,
shows the old behaviour beside it: each event once per process. Decisions stay where the
request is handled: the worker that takes a request asks glia, and only that one.

One deployment for the whole module (it takes most of this file's time to start).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import Client, Glia, bridge_module, free_port, glia_config, wait_until
from hosting import ORACLE, python_path_env, python_section
from oracle import new_event_log
from workers import Deployment, Worker, mkdir

WORKERS = ("worker1", "worker2")
COUNTER = "new_event_log.NewEventLog"


@dataclass
class WorkerWorld:
    """The deployment, the two glias and the event logs of their counting modules."""

    deployment: Deployment
    glia: Glia
    every_process_glia: Glia
    once_log: Path
    every_process_log: Path

    def client(self, user: Client, process: Any) -> Client:
        """`user`'s client, sending through `process` (the main one or a worker)."""
        return Client(process.url, user.token, user.user_id)

    def once(self) -> collections.Counter[str]:
        """How often the glia behind `notifications: once` was handed each event."""
        return collections.Counter(event for event, _, _ in new_event_log.read(str(self.once_log)))

    def every_process(self) -> collections.Counter[str]:
        """How often the glia behind `notifications: every_process` was handed each event."""
        return collections.Counter(event for event, _, _ in new_event_log.read(str(self.every_process_log)))

    def shared_room(self, creator: Client, guest: Client, create: Any, invite: Any, join: Any) -> str:
        """A room `creator` creates through one process and invites `guest` to through another,
        which `guest` joins through a third; returns it once glia has been handed its events."""
        created = self.client(creator, create).create_room(preset="private_chat")
        assert created.status == 200, created
        room = str(created.body["room_id"])
        assert self.client(creator, invite).invite(room, guest.user_id).status == 200
        assert self.client(guest, join).join(room).status == 200
        wait_until(lambda: room in self.persisters(), 60, "the room's events reaching glia")
        return room

    def send(self, user: Client, process: Any, room: str) -> str:
        """A message `user` sends to `room` through `process`; its event id."""
        reply = self.client(user, process).send_text(room, f"hello through {process.url}")
        assert reply.status == 200, reply
        return str(reply.body["event_id"])

    def settle(self, user: Client, rooms: list[str], sent: list[str]) -> None:
        """Waits until every process has handed glia all of `rooms`' events so far, then checks
        that the once-glia got each event of the deployment once, the every-process glia once
        per process.

        The wait: `user` sends a last event to each room; once every process has handed it to
        the every-process bridge, each has handled all the room's earlier events (a process
        hears one persister's events in order, and calls its bridges in list order)."""
        processes = len(self.deployment.processes)
        markers = [self.send(user, self.deployment.main, room) for room in rooms]
        wait_until(
            lambda: all(self.every_process()[m] >= processes for m in markers),
            60,
            "every process handing the last events to the every-process glia",
            lambda: f"every-process counts of the last events: {[self.every_process()[m] for m in markers]}",
        )
        wait_until(lambda: all(self.once()[e] for e in (*sent, *markers)), 60, "every sent event reaching glia")
        once, every = self.once(), self.every_process()
        assert set(once) == set(every), "both glias were handed the same events"
        assert {event: n for event, n in once.items() if n != 1} == {}, "an event reached glia more than once"
        assert {event: n for event, n in every.items() if n != processes} == {}, "once per process when opted out"

    def persisters(self) -> dict[str, str]:
        """The process that persisted each room's events, by the events the once-glia saw."""
        return {room: persister for _, room, persister in new_event_log.read(str(self.once_log))}


def counter_module(log: Path) -> dict[str, Any]:
    """glia's entry for the hosted counting module."""
    return {"module": COUNTER, "name": "new_event_log", "config": {"path": str(log)}}


def start_glias(glia_bin: Path, workdir: Path, once_log: Path, every_log: Path) -> tuple[Glia, Glia]:
    """The glia behind the bridges (the seed modules and the counter) and the one behind the
    every-process bridges (the counter alone), started together: each loads a Python host."""
    env = python_path_env(ORACLE)
    port, every_port = free_port(), free_port()
    config = glia_config(port, "http://127.0.0.1:9", censor=False)  # no event_censorer: no censor
    config["python"] = python_section("localhost")
    config["modules"].append(counter_module(once_log))
    every_config = {
        "listen": f"127.0.0.1:{every_port}",
        "auth_token": config["auth_token"],
        "python": python_section("localhost"),
        "modules": [counter_module(every_log)],
    }
    glias = [
        Glia.prepare(glia_bin, mkdir(workdir / name), settings, at, env=env)
        for name, settings, at in (("glia", config, port), ("glia-every", every_config, every_port))
    ]
    for glia in glias:
        glia.process.start()
    try:
        for glia in glias:
            glia.wait()
    except BaseException:
        for glia in glias:
            glia.stop()
        raise
    return glias[0], glias[1]


@pytest.fixture(scope="module")
def workers(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerWorld]:
    workdir = tmp_path_factory.mktemp("synapse-workers")
    once_log, every_log = workdir / "once-events.log", workdir / "every-process-events.log"
    glia, every_glia = start_glias(glia_bin, workdir, once_log, every_log)
    modules = [
        bridge_module(glia.url),
        bridge_module(every_glia.url, notifications="every_process", web_resources=False, web_resource_paths=[]),
    ]
    try:
        deployment = Deployment.start(workdir, modules, WORKERS, event_persisters=WORKERS)
    except BaseException:
        every_glia.stop()
        glia.stop()
        raise
    yield WorkerWorld(deployment, glia, every_glia, once_log, every_log)
    deployment.stop()
    every_glia.stop()
    glia.stop()


def test_each_event_reaches_glia_once_whichever_process_it_came_through(workers: WorkerWorld) -> None:
    processes = workers.deployment.processes
    alice = workers.deployment.main.register("alice")
    bob = workers.deployment.main.register("bob")
    rooms: list[str] = []
    # Rooms until both persisters persist one (each room is persisted by one of them, by a
    # hash of its id), each created, joined and written to through a different process.
    while len(rooms) < 3 or len(set(workers.persisters().values())) < 2:
        assert len(rooms) < 20, f"20 rooms and still not both persisters: {set(workers.persisters().values())}"
        i = len(rooms)
        rooms.append(workers.shared_room(alice, bob, processes[i % 3], processes[(i + 1) % 3], processes[(i + 2) % 3]))
    sent = [workers.send(alice, process, room) for room in rooms for process in processes]
    workers.settle(bob, rooms, sent)
    # Both persisters had rooms, and the main process persisted (and forwarded) no event.
    assert set(workers.persisters().values()) == set(WORKERS)


def test_a_restarted_persister_forwards_its_rooms_events_once(workers: WorkerWorld) -> None:
    main, worker1, worker2 = workers.deployment.processes
    carol = workers.deployment.main.register("carol")
    dave = workers.deployment.main.register("dave")
    rooms = [workers.shared_room(carol, dave, main, worker2, main)]
    while workers.persisters()[rooms[-1]] != worker1.name:
        assert len(rooms) < 20, "20 rooms and none persisted by worker1"
        rooms.append(workers.shared_room(carol, dave, main, worker2, main))
    worker1.stop()
    worker1.restart()
    room = rooms[-1]
    sent = [workers.send(carol, process, room) for process in (main, worker1, worker2, main)]
    workers.settle(dave, [room], sent)
    assert {workers.persisters()[room]} == {worker1.name}


def test_decisions_are_asked_by_the_process_that_handles_the_request(workers: WorkerWorld) -> None:
    deployment = workers.deployment
    evil = deployment.main.register("evilguy")
    alice = deployment.main.register("alice2")
    worker1, worker2 = deployment.workers
    before = _decided(deployment, "user_may_create_room")
    refused = workers.client(evil, worker2).create_room()
    assert (refused.status, refused.errcode) == (403, "M_FORBIDDEN"), refused
    assert _grown(before, _decided(deployment, "user_may_create_room")) == {worker2.name: 1}

    room = workers.client(alice, worker2).create_room().body["room_id"]
    before = _decided(deployment, "check_event_for_spam")
    blocked = workers.client(alice, worker1).send_text(room, "buy followers here")
    assert (blocked.status, blocked.errcode) == (403, "ORG_GLIA_BLOCKED"), blocked
    assert _grown(before, _decided(deployment, "check_event_for_spam")) == {worker1.name: 1}


def _decided(deployment: Deployment, callback: str) -> dict[str, int]:
    """How many times each process's bridges logged glia's answer to `callback`."""
    return {_name(p): p.log().count(f"glia decided {callback} ") for p in deployment.processes}


def _name(process: Any) -> str:
    return process.name if isinstance(process, Worker) else "main"


def _grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The processes whose count grew, by how much."""
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}
