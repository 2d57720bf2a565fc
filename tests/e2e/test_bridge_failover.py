"""No single point of failure: a real Synapse whose bridge knows two glia coordinators (the
first over a Unix socket, the second over TCP), both on one nats-server, whose one `glia
worker` runs the modules. Messages are sent without pause while the first coordinator is
killed (SIGKILL), then started again.

Users register meanwhile too, each registration a notification (`on_user_registration`) to
`account_expiry` on the worker, which counts what it received on its `/metrics`.

What must hold: every decision is made by the module (the spammer is refused every time,
everyone else accepted: `check_event_for_spam` fails *closed* here, so a decision the bridge
lost would show as a 500); no notification is lost but those in flight at the kill (the
bridge's documented failure mode: one that may have been delivered is not resent); the bridge
moves to the second coordinator at once and goes back to the first one after its backoff. The
recovery time (from the kill to the first send decided after it) and the count of lost
notifications are printed (`-s` shows them).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from glia_synapse.failover import FIRST_BACKOFF
from harness import (
    NatsServer,
    Process,
    Synapse,
    bridge_module,
    free_port,
    http_request,
    mxid,
    wait_until,
)

SPAMMER = "spammer"


def glia_config(nats_url: str, unix_socket: Path | None) -> dict[str, Any]:
    """The coordinators' (and the worker's) config: the modules run on the worker."""
    config: dict[str, Any] = {
        "auth_token": "failover-token",
        "bus": {"type": "nats", "url": nats_url},
        "modules": [
            {"module": "list_spam_checker", "placement": "nats", "config": {"evil_users": [mxid(SPAMMER)]}},
            {"module": "account_expiry", "placement": "nats"},
        ],
    }
    if unix_socket is not None:
        config["listen_unix"] = str(unix_socket)
    return config


def serving(process: Process, what: str = "glia serving on") -> bool:
    return what in process.log_path.read_text(errors="replace") or not process.running()


def metric_sum(url: str, pattern: str) -> float:
    """The sum of the samples of glia's `/metrics` at `url` that `pattern` matches (its
    group: the value)."""
    status, _, raw = http_request("GET", url + "/metrics")
    assert status == 200, raw
    return sum(float(value) for value in re.findall(pattern, raw.decode()))


@dataclass
class Coordinator:
    """One `glia serve`."""

    name: str
    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Coordinator:
        self.process.log_path.write_text("")
        self.process.start()
        wait_until(lambda: serving(self.process), 30, f"{self.name} start-up", self.process.tail)
        assert self.process.running(), self.process.tail()
        return self

    def decisions(self) -> float:
        """`check_event_for_spam` decisions it made (its /metrics)."""
        return metric_sum(self.url, r'glia_decisions_total\{callback="check_event_for_spam",result="\w+"\} (\S+)')


@dataclass
class Cluster:
    nats: NatsServer
    worker: Process
    worker_metrics: str
    first: Coordinator
    second: Coordinator
    socket: Path
    synapse: Synapse
    stopped: list[Any] = field(default_factory=list)

    def registrations_received(self) -> float:
        """`on_user_registration` notifications the worker's module received."""
        return metric_sum(
            self.worker_metrics,
            r'glia_invocations_total\{callback="on_user_registration",module="account_expiry",outcome="\w+"\} (\S+)',
        )


@pytest.fixture(scope="module")
def cluster(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("failover")
    started: list[Any] = []
    try:
        nats = NatsServer.start(workdir)
        started.append(nats)
        socket = workdir / "first.sock"
        configs = {}
        for name, unix in (("first", socket), ("second", None), ("worker", None)):
            configs[name] = workdir / f"{name}.yaml"
            configs[name].write_text(yaml.safe_dump(glia_config(nats.url, unix), sort_keys=False))
        argv = [str(glia_bin), "worker", "--config", str(configs["worker"]), "--metrics-listen", "127.0.0.1:0"]
        worker = Process("glia-worker", argv, workdir / "worker.log")
        started.append(worker.start())
        wait_until(lambda: serving(worker, "serving GET /metrics on"), 30, "worker start-up", worker.tail)
        found = re.findall(r"serving GET /metrics on (http://127\.0\.0\.1:\d+)", worker.log_path.read_text())
        assert found, worker.tail()
        coordinators = []
        for name in ("first", "second"):
            port = free_port()
            argv = [str(glia_bin), "serve", "--config", str(configs[name]), "--listen", f"127.0.0.1:{port}"]
            coordinator = Coordinator(name, Process(name, argv, workdir / f"{name}.log"), port)
            started.append(coordinator.start().process)
            coordinators.append(coordinator)
        first, second = coordinators
        bridge = bridge_module(
            f"unix:{socket}",
            auth_token="failover-token",
            timeout=5,
            fail_open={"check_event_for_spam": False},
            callbacks=["check_event_for_spam", "on_user_registration"],
        )
        bridge["config"]["glia_url"] = [f"unix:{socket}", second.url]
        synapse = Synapse.start(workdir / "synapse", [bridge])
        started.append(synapse)
    except RuntimeError as e:
        for p in reversed(started):
            p.stop()
        pytest.fail(str(e), pytrace=False)
    yield Cluster(nats, worker, found[0], first, second, socket, synapse)
    for p in reversed(started):
        p.stop()


@dataclass
class Send:
    started: float
    ended: float
    sender: str
    status: int
    body: Any


class Loop:
    """Runs `step(n)` for n = 1, 2, ... on a thread of its own until the `with` block ends,
    recording what each step returns in `done`."""

    def __init__(self, join_timeout: float) -> None:
        self.done: list[Send] = []
        self._join_timeout = join_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def step(self, n: int) -> Send:
        raise NotImplementedError

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            self.done.append(self.step(n))

    def __enter__(self) -> Loop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self._join_timeout)


class Registrations(Loop):
    """Registers users one after another until stopped, recording each."""

    def __init__(self, synapse: Synapse) -> None:
        super().__init__(join_timeout=60)
        self.synapse = synapse

    def step(self, n: int) -> Send:
        started = time.monotonic()
        reply = self.synapse.try_register(f"newcomer{n}")
        return Send(started, time.monotonic(), f"newcomer{n}", reply.status, reply.body)


class Traffic(Loop):
    """Sends messages one after another (alice, with every fifth from the spammer) until
    stopped, recording each."""

    def __init__(self, synapse: Synapse, room_id: str) -> None:
        super().__init__(join_timeout=30)
        self.alice = synapse.register("alice")
        self.spammer = synapse.register(SPAMMER)
        for client in (self.alice, self.spammer):
            joined = client.join(room_id)
            assert joined.status == 200, joined.body
        self.room_id = room_id

    @property
    def sends(self) -> list[Send]:
        return self.done

    def step(self, n: int) -> Send:
        client = self.spammer if n % 5 == 0 else self.alice
        started = time.monotonic()
        reply = client.send_text(self.room_id, f"message {n}")
        return Send(started, time.monotonic(), client.user_id, reply.status, reply.body)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        target = len(self.sends) + count
        wait_until(lambda: len(self.sends) >= target, timeout, f"{count} more sends")


def expected_status(send: Send) -> int:
    return 403 if send.sender == mxid(SPAMMER) else 200


def test_killing_a_coordinator_loses_no_decision(cluster: Cluster) -> None:
    synapse = cluster.synapse
    setup = synapse.register("host")
    room = setup.create_room(preset="public_chat")
    assert room.status == 200, room.body
    room_id = room.body["room_id"]
    traffic = Traffic(synapse, room_id)  # registers its two users
    received_before = cluster.registrations_received()
    with traffic, Registrations(synapse) as registrations:
        traffic.wait_for(40)
        assert cluster.first.decisions() > 0 and cluster.second.decisions() == 0  # the first is preferred
        killed_at = time.monotonic()
        cluster.first.process.signal(signal.SIGKILL)
        traffic.wait_for(60)
        assert cluster.second.decisions() > 0
        cluster.first.process.stop()
        # Back again, on the same socket path (the stale socket is replaced).
        cluster.first.start()
        wait_until(lambda: cluster.first.decisions() > 0, FIRST_BACKOFF * 40, "the bridge going back to the first")
        traffic.wait_for(20)
    wrong = [s for s in traffic.sends if s.status != expected_status(s)]
    assert not wrong, f"{len(wrong)} of {len(traffic.sends)} sends not decided by the module: {wrong[:5]}"
    recovery_ms = (min(s.ended for s in traffic.sends if s.ended >= killed_at) - killed_at) * 1000
    in_flight = [s for s in traffic.sends if s.started < killed_at < s.ended]
    registered = [r for r in registrations.done if r.status == 200]
    assert len(registered) == len(registrations.done) and registered, registrations.done[:3]
    lost = len(registered) - int(cluster.registrations_received() - received_before)
    registering_at_kill = [r for r in registered if r.started < killed_at < r.ended]
    assert 0 <= lost <= len(registering_at_kill), (lost, len(registered))
    worst_ms = max((s.ended - s.started) * 1000 for s in traffic.sends if s.ended >= killed_at)
    print(
        f"\nfailover: {len(traffic.sends)} sends, none lost; SIGKILL to the first decided send after it (recovery): "
        f"{recovery_ms:.1f} ms; {len(in_flight)} send(s) in flight at the kill, slowest send around it "
        f"{worst_ms:.1f} ms; {len(registered)} registrations, {lost} on_user_registration notification(s) "
        f"lost ({len(registering_at_kill)} registration(s) in flight at the kill)"
    )
