"""Synapse with workers (issue 22): Synapse 1.163.2 as a main process and two generic workers
on Postgres and Redis, both workers event persisters (Synapse shares rooms out between them),
the bridge in every process's `modules:`, and one glia (`worker_glia.py`): the seed modules,
`list_spam_checker` placed on NATS and served by a `glia worker`, and two hosted modules, one
that writes down each event `on_new_event` hands it (`oracle/new_event_log.py`), and the
scripted module s1, which denies some joins and refuses some events.

- The scenario of `worker_scenario.py` runs against a single Synapse process beside a glia
  with the same config, and against the deployment: every reply and every decision is the same.
- Synapse calls `on_new_event` in the process that persisted the event and again in every
  other process that hears of it over replication. The bridge forwards it from the persister
  only (`notifications: once`, the default), so glia's module sees each event once, whichever
  process the client sent it through. A second bridge in every process, set to
  `notifications: every_process` and pointed at a second glia with the same hosted module,
  shows the old behaviour beside it: each event once per process.
- Decisions stay where the request is handled: the worker that takes a request asks glia, and
  only that one.
- Outages and restarts: glia down (every process answers alike, a worker restarted meanwhile
  converges), glia restarted under traffic (no request lost), the workers restarted one by one
  under traffic (each notification once).

One deployment for the whole module (it takes most of this file's time to start); the
scenario's test comes first, before the others' users and outages.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from differential import Side
from harness import GLIA_TOKEN, SERVER_NAME, Client, Glia, NatsServer, Synapse, bridge_module, free_port, wait_until
from hosting import ORACLE, python_path_env, python_section
from oracle import new_event_log
from worker_glia import (
    GliaFiles,
    by_callback,
    counter_module,
    decisions,
    lines,
    prepare_glia,
    start_all,
    start_nats_worker,
)
from worker_scenario import HELLO, STEPS, Answer, Run, Traffic, play
from workers import Deployment, Worker, mkdir

WORKERS = ("worker1", "worker2")


@dataclass
class Single:
    """The single-process run: one Synapse (SQLite) and its own glia, with the same config."""

    synapse: Synapse
    glia: Glia
    files: GliaFiles
    side: Side

    def stop(self) -> None:
        self.synapse.stop()
        self.glia.stop()


@dataclass
class WorkerWorld:
    """The deployment, its glia (with the NATS-placed module's worker), the every-process
    glia and the counting module's logs; the single-process run once a test asks for it."""

    deployment: Deployment
    glia: Glia
    every_process_glia: Glia
    files: GliaFiles
    every_process_log: Path
    nats: NatsServer
    side: Side
    workdir: Path
    _single: Single | None = None

    @property
    def once_log(self) -> Path:
        return self.files.counter

    def single(self, glia_bin: Path) -> Single:
        """Synapse as one process beside a glia with the same config (started on first use)."""
        if self._single is None:
            files = GliaFiles(self.workdir / "single-glia")
            glia = prepare_glia(glia_bin, files, self.nats.url)
            start_all([glia])
            try:
                synapse = Synapse.start(self.workdir / "single", [bridge_module(glia.url)])
            except BaseException:
                glia.stop()
                raise
            self._single = Single(synapse, glia, files, Side("single", synapse, SERVER_NAME))
        return self._single

    def stop_single(self) -> None:
        if self._single is not None:
            self._single.stop()

    def client(self, user: Client, process: Any) -> Client:
        """`user`'s client, sending through `process` (the main one or a worker)."""
        return Client(process.url, user.token, user.user_id)

    def once(self, rooms: Collection[str] | None = None) -> collections.Counter[str]:
        """How often the glia behind `notifications: once` was handed each event (of `rooms`)."""
        return _counted(self.once_log, rooms)

    def every_process(self, rooms: Collection[str] | None = None) -> collections.Counter[str]:
        """How often the glia behind `notifications: every_process` was handed each event (of
        `rooms`)."""
        return _counted(self.every_process_log, rooms)

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

    def settle(
        self, user: Client, rooms: list[str], sent: list[str], all_heard: bool = True, redelivered: int = 0
    ) -> None:
        """Waits until every process has handed glia all of `rooms`' events so far, then checks
        that the once-glia got each event of the deployment once, the every-process glia once
        per process.

        The wait: `user` sends a last event to each room; once every process has handed it to
        the every-process bridge, each has handled all the room's earlier events (a process
        hears one persister's events in order, and calls its bridges in list order). A process
        that was down while an event was persisted never hears of it (`all_heard` False: the
        every-process glia got each event at most once per process). `redelivered`: how many
        events Synapse itself may have notified twice in their persister (a `send_events`
        replication request the persister handled but did not answer before it stopped is sent
        again, and the restarted persister notifies its event again: a native module sees that
        event twice there too); each such event may reach both glias once more."""
        processes = len(self.deployment.processes)
        markers = [self.send(user, self.deployment.main, room) for room in rooms]
        wait_until(
            lambda: all(self.every_process()[m] >= processes for m in markers),
            60,
            "every process handing the last events to the every-process glia",
            lambda: f"every-process counts of the last events: {[self.every_process()[m] for m in markers]}",
        )
        wait_until(lambda: all(self.once()[e] for e in (*sent, *markers)), 60, "every sent event reaching glia")
        # Of these rooms only: the events of the outage tests' rooms never reached the once-glia
        # while it was down (a notification glia cannot take is dropped), the other glia's they did.
        once, every = self.once(rooms), self.every_process(rooms)
        assert set(once) == set(every), "both glias were handed the same events"
        again = {event: n for event, n in once.items() if n != 1}
        assert len(again) <= redelivered and all(n == 2 for n in again.values()), (
            f"an event reached glia more than once (Synapse sent {redelivered} persisted events again): {again}"
        )
        heard = {
            event: n
            for event, n in every.items()
            if n != processes + (event in again)
            if all_heard or n > processes + (event in again)
        }
        assert heard == {}, "once per process when opted out"

    def persisters(self) -> dict[str, str]:
        """The process that persisted each room's events, by the events the once-glia saw."""
        return {room: persister for _, room, persister in new_event_log.read(str(self.once_log))}


def _counted(log: Path, rooms: Collection[str] | None) -> collections.Counter[str]:
    """How often each event (of `rooms`, or of all) is written in a counter's `log`."""
    return collections.Counter(e for e, room, _ in new_event_log.read(str(log)) if rooms is None or room in rooms)


def start_every_process_glia(glia_bin: Path, workdir: Path, log: Path) -> Glia:
    """The glia behind the every-process bridges: the counter alone, in a Python host."""
    port = free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "python": python_section("localhost"),
        "modules": [counter_module(log)],
    }
    return Glia.prepare(glia_bin, mkdir(workdir / "glia-every"), config, port, env=python_path_env(ORACLE))


@pytest.fixture(scope="module")
def workers(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerWorld]:
    workdir = tmp_path_factory.mktemp("synapse-workers")
    started: list[Any] = []
    try:
        nats = NatsServer.start(mkdir(workdir / "nats"))
        started.append(nats)
        started.append(start_nats_worker(glia_bin, nats, workdir / "glia-worker"))
        files = GliaFiles(workdir / "glia")
        glia = prepare_glia(glia_bin, files, nats.url)
        every_log = workdir / "every-process-events.log"
        every_glia = start_every_process_glia(glia_bin, workdir, every_log)
        started += [glia, every_glia]
        start_all([glia, every_glia])
        modules = [
            bridge_module(glia.url),
            bridge_module(every_glia.url, notifications="every_process", web_resources=False, web_resource_paths=[]),
        ]
        deployment = Deployment.start(workdir, modules, WORKERS, event_persisters=WORKERS)
    except BaseException:
        for thing in reversed(started):
            thing.stop()
        raise
    side = Side("workers", deployment.main, SERVER_NAME)
    world = WorkerWorld(deployment, glia, every_glia, files, every_log, nats, side, workdir)
    yield world
    world.stop_single()
    deployment.stop()
    for thing in reversed(started):
        thing.stop()


def test_every_decision_and_reply_is_the_single_process_one(workers: WorkerWorld, glia_bin: Path) -> None:
    single = workers.single(glia_bin)
    runs = {
        "single": (Run(single.side, [single.synapse.url]), single.files),
        "workers": (Run(workers.side, [p.url for p in workers.deployment.processes]), workers.files),
    }
    before = {label: (lines(files.decisions), lines(files.counter)) for label, (_, files) in runs.items()}
    seen = {label: play(run) for label, (run, _) in runs.items()}
    assert [(s.step, s.status) for s in seen["single"]] == [(name, status) for name, status, _ in STEPS]
    assert seen["workers"] == seen["single"], "\n".join(
        f"{a.step}: single {(a.status, a.body)}, workers {(b.status, b.body)}"
        for a, b in zip(seen["single"], seen["workers"], strict=True)
        if a != b
    )
    records = {label: settled_decisions(run, files, *before[label]) for label, (run, files) in runs.items()}
    compared = compare_decisions(records["single"], records["workers"])
    print(f"{len(STEPS)} steps answered alike; {compared} decision records compared, all equal")
    for label, recorded in records.items():
        print(f"{label}: {sorted(by_callback(recorded).items())}")


def settled_decisions(run: Run, files: GliaFiles, skip: int, counted: int) -> list[dict[str, Any]]:
    """The decisions glia recorded since the scenario started, once the notifications of its
    events are in: a last message in each room, handed to the counter (which follows each
    persister's events in order), then one `on_new_event` record for each event counted."""
    alice, mallory = run.side.user("alice"), run.side.user("mallory")
    markers = [alice.send_text(run.rooms["main"], "last"), mallory.send_text(run.rooms["mallory"], "last")]
    ids = {str(m.body["event_id"]) for m in markers if m.status == 200}
    assert len(ids) == 2, markers
    counter = str(files.counter)
    wait_until(lambda: ids <= {e for e, _, _ in new_event_log.read(counter)}, 60, "the last events reaching glia")
    events = len(new_event_log.read(counter)) - counted

    def recorded() -> list[dict[str, Any]]:
        return decisions(files.decisions, skip)

    wait_until(
        lambda: sum(r["callback"] == "on_new_event" for r in recorded()) >= events,
        30,
        f"{events} on_new_event decisions in {files.decisions}",
    )
    return recorded()


#: Asked by every process for each request and cached by each process's bridge while glia
#: says the answer holds: with three processes, asked more often than with one. Compared by
#: the decisions made, not by their number.
CACHED = {"is_user_expired"}


def compare_decisions(single: list[dict[str, Any]], workers: list[dict[str, Any]]) -> int:
    """Asserts both runs decided the same, by callback; how many records were compared."""
    counts = {
        label: by_callback(r for r in records if r["callback"] not in CACHED)
        for label, records in (("single", single), ("workers", workers))
    }
    assert counts["workers"] == counts["single"], (
        f"only single: {counts['single'] - counts['workers']}, only workers: {counts['workers'] - counts['single']}"
    )
    cached = {
        label: set(by_callback(r for r in records if r["callback"] in CACHED))
        for label, records in (("single", single), ("workers", workers))
    }
    assert cached["workers"] == cached["single"], cached
    return len(single) + len(workers)


def test_each_event_reaches_glia_once_whichever_process_it_came_through(workers: WorkerWorld) -> None:
    processes = workers.deployment.processes
    alice = workers.side.user("alice")
    bob = workers.side.user("bob")
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
    carol = workers.side.user("carol")
    dave = workers.side.user("dave")
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
    evil = workers.side.user("evilguy")
    alice = workers.side.user("alice2")
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


# -- outages and rolling restarts ---------------------------------------------------------------

#: What each probe answers while glia is down, by the bridge's failure modes (its README, "When
#: glia is down"): room creation and joins fail closed, messages (a spam check and a
#: third-party rule), the expiry check and notifications fail open.
GLIA_DOWN = {
    "create a room": (500, "M_UNKNOWN"),
    "join": (500, "M_UNKNOWN"),
    "send": (200, None),
    "send what message_policy refuses": (200, None),
    "whoami of an expired user": (200, None),
    "create an alias": (200, None),
}
#: The same probes with glia up.
GLIA_UP = {
    "create a room": (200, None),
    "join": (200, None),
    "send": (200, None),
    "send what message_policy refuses": (403, "ORG_GLIA_BLOCKED"),
    "whoami of an expired user": (403, "ORG_MATRIX_EXPIRED_ACCOUNT"),
    "create an alias": (200, None),
    "the demo web resource": (200, None),
}


def probe(workers: WorkerWorld, process: Any, room: str, round_: str) -> dict[str, tuple[int, str | None]]:
    """What `process` answers to one request of each kind (a fresh user joins `room`; a fresh
    alias is made for it: `user_may_create_room_alias`, which no glia module serves)."""
    alice = workers.client(workers.side.user("alice"), process)
    tag = f"{_name(process)}-{round_.replace(' ', '-')}"
    joiner = workers.client(workers.side.user(f"joiner-{tag}"), process)
    alias = f"#probe-{tag}:{SERVER_NAME}"
    replies = {
        "create a room": alice.create_room(),
        "join": joiner.join(room),
        "send": alice.send_text(room, "probe"),
        "send what message_policy refuses": alice.send_text(room, "buy followers"),
        "whoami of an expired user": workers.client(workers.side.user("expired"), process).whoami(),
        "create an alias": alice.request("PUT", f"/_matrix/client/v3/directory/room/{quote(alias)}", {"room_id": room}),
        "the demo web resource": alice.request("GET", HELLO, auth=False),
    }
    return {kind: (reply.status, reply.errcode) for kind, reply in replies.items()}


def probe_all(workers: WorkerWorld, room: str, round_: str) -> dict[str, dict[str, tuple[int, str | None]]]:
    """`probe` on every process, by process name; asserts they all answered alike."""
    answers = {_name(p): probe(workers, p, room, round_) for p in workers.deployment.processes}
    assert len({json.dumps(a, sort_keys=True) for a in answers.values()}) == 1, answers
    return answers


def converged(workers: WorkerWorld, process: Any) -> bool:
    """Whether `process` serves glia's web resource and asks glia's modules again."""
    evil = workers.client(workers.side.user("evilguy"), process)
    web = evil.request("GET", HELLO, auth=False)
    return web.status == 200 and evil.create_room().status == 403


def test_glia_down_every_process_answers_alike_and_a_worker_restarted_meanwhile_converges(
    workers: WorkerWorld,
) -> None:
    room = workers.client(workers.side.user("alice"), workers.deployment.main).create_room(preset="public_chat")
    assert room.status == 200, room
    room_id = room.body["room_id"]
    assert probe_all(workers, room_id, "up")["main"] == GLIA_UP
    workers.glia.stop()
    down = probe_all(workers, room_id, "down")
    assert _without_web(down["main"]) == GLIA_DOWN, down
    worker1 = workers.deployment.workers[0]
    worker1.stop()
    worker1.restart()  # while glia is down: its bridge registers every callback it may forward
    # Until glia answers it, the restarted worker fails closed on callbacks no glia module
    # serves, which the others never registered (the bridge's README, "At start-up").
    unconverged = probe(workers, worker1, room_id, "restarted")
    assert unconverged["create an alias"] == (500, "M_UNKNOWN"), unconverged
    back = restart_glia(workers)
    wait_until(lambda: APPLIED in worker1.log(), 60, "the restarted worker applying glia's module list")
    print(f"glia back: the worker restarted meanwhile applied glia's module list after {time.monotonic() - back:.2f} s")
    assert probe_all(workers, room_id, "again")["main"] == GLIA_UP
    workers.glia.stop()  # the next outage: the restarted worker answers as the others
    assert _without_web(probe_all(workers, room_id, "next outage")["main"]) == GLIA_DOWN
    restart_glia(workers)


#: What a bridge logs when glia answers it after it started without glia.
APPLIED = "glia answers now: applying its module list"


def restart_glia(workers: WorkerWorld) -> float:
    """Starts glia again and waits until every process asks it again; when it served (a
    `time.monotonic()`). Prints how long after that each process took."""
    workers.glia.restart()
    back = time.monotonic()
    recovered = {}
    for process in workers.deployment.processes:
        wait_until(lambda p=process: converged(workers, p), 60, f"{_name(process)} asking glia again")
        recovered[_name(process)] = round(time.monotonic() - back, 2)
    print(f"glia back: each process served glia's resource and asked its modules again after (s): {recovered}")
    return back


def _without_web(answers: dict[str, tuple[int, str | None]]) -> dict[str, tuple[int, str | None]]:
    return {kind: answer for kind, answer in answers.items() if kind != "the demo web resource"}


def test_a_rolling_restart_of_glia_under_traffic_loses_no_request(workers: WorkerWorld) -> None:
    alice = workers.side.user("alice")
    room = workers.client(alice, workers.deployment.main).create_room(preset="public_chat").body["room_id"]
    urls = [p.url for p in workers.deployment.processes]
    with Traffic(alice, room, urls) as traffic:
        wait_until(lambda: len(traffic.answers) >= 6, 60, "traffic before the restart")
        stopped = time.monotonic()
        workers.glia.stop()
        wait_until(lambda: _let_through(traffic.answered_since(stopped)), 60, "the failure mode answering")
        workers.glia.restart()
        back = time.monotonic()
        wait_until(lambda: _module_decided(traffic.answered_since(back), urls), 60, "glia deciding again everywhere")
    answers = traffic.answers
    assert [a for a in answers if a.status is None] == [], "requests without an answer"
    for a in answers:
        expected = {(200, None), (403, "ORG_GLIA_BLOCKED")} if "buy" in a.text else {(200, None)}
        assert (a.status, a.errcode) in expected, a
    by_policy = _let_through(answers)
    assert [a for a in by_policy if a.at < stopped] == [], "refused while glia was up"
    stored = {e["event_id"] for e in _room_events(alice, room)}
    lost = [a for a in answers if a.event_id and a.event_id not in stored]
    assert lost == [], "messages answered 200 but not in the room"
    first = {url: min(a.at for a in answers if a.at > back and a.url == url and a.status == 403) - back for url in urls}
    print(
        f"glia restart under traffic: {len(answers)} requests, {len(by_policy)} spam let through by the failure mode; "
        f"first module decision after glia was back, by process (s): { {u: round(t, 2) for u, t in first.items()} }"
    )


def test_a_rolling_restart_of_the_workers_under_traffic_delivers_each_notification_once(
    workers: WorkerWorld,
) -> None:
    main = workers.deployment.main
    erin, frank = workers.side.user("erin"), workers.side.user("frank")
    rooms = {workers.shared_room(erin, frank, main, main, main) for _ in range(4)}
    while len({workers.persisters()[r] for r in rooms}) < 2:
        assert len(rooms) < 20, "20 rooms and not both persisters"
        rooms.add(workers.shared_room(erin, frank, main, main, main))
    streams = [Traffic(erin, room, [main.url], spam_every=10**9) for room in sorted(rooms)[:2]]
    for stream in streams:
        stream.__enter__()
    try:
        for worker in workers.deployment.workers:
            restarted = time.monotonic()
            worker.stop()
            worker.restart()
            for stream in streams:
                wait_until(
                    lambda s=stream, t=restarted: len(s.answered_since(t)) >= 3, 120, f"traffic after {worker.name}"
                )
    finally:
        for stream in streams:
            stream.__exit__()
    answers = [a for stream in streams for a in stream.answers]
    assert [a for a in answers if a.status != 200] == [], "every message through the main process was stored"
    sent = [str(a.event_id) for a in answers]
    # Synapse's own redelivery: a persister stopped mid-request gets it again after its restart.
    resent = sum(p.log().count("send_events request timed out; retrying") for p in workers.deployment.processes)
    workers.settle(frank, sorted({s.room for s in streams}), sent, all_heard=False, redelivered=resent)
    print(f"rolling restart of both workers: {len(sent)} messages, each handed to glia once")


def _let_through(answers: list[Answer]) -> list[Answer]:
    """The messages message_policy refuses that were stored: glia could not be asked."""
    return [a for a in answers if "buy" in a.text and a.status == 200]


def _module_decided(answers: list[Answer], urls: list[str]) -> bool:
    """Whether message_policy refused a message through every process among `answers`."""
    return {a.url for a in answers if a.status == 403} == set(urls)


def _room_events(user: Client, room: str) -> list[dict[str, Any]]:
    reply = user.request("GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages?dir=b&limit=1000")
    assert reply.status == 200, reply
    return list(reply.body["chunk"])
