"""The CPU each part of glia spends per decision, for capacity planning (docs/capacity.md).

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh):

    cargo build --release -p glia-runtime --bin glia
    GLIA_BIN=target/release/glia tests/e2e/.venv/bin/python tests/e2e/bench_capacity.py

Three deployments run side by side, driven in interleaved rounds with
`POST /_glia/v1/callbacks/check_event_for_spam` carrying a real event's PDU, from
`--clients` kept-alive connections:

- `local`: `glia serve` with two Rust modules in its process (`list_spam_checker` and
  `message_policy`, an instance per thread, their defaults);
- `nats`: the same two modules placed on NATS, served by one `glia worker` through a
  nats-server;
- `python`: a do-nothing Synapse module (`check_event_for_spam` answering `NOT_SPAM`) in the
  Python host `glia serve` starts.

For each round and each process, the CPU time it used (the sum over its threads of
`/proc/PID/task/*/schedstat`, in nanoseconds) is divided by the decisions of the round. The
medians over the rounds are printed in µs per decision, with decisions per second per core
(10^6 / µs), which is the figure a capacity plan multiplies. The load generator's own CPU is
not counted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench_python_host import DO_NOTHING, EVENT, glia_config, start_glia
from harness import GLIA_TOKEN, Glia, NatsServer, Process, free_port, glia_binary
from hosting import child_pids, python_section

PATH = "/_glia/v1/callbacks/check_event_for_spam"
RUST_MODULES = [
    {"module": "list_spam_checker", "config": {"evil_users": ["@spammer:example.com"]}},
    {"module": "message_policy", "config": {"blocked_keywords": ["buy followers"]}},
]


def pid_of(process: Process) -> int:
    assert process.popen is not None, f"{process.name} is not running"
    return process.popen.pid


def cpu_ns(pid: int) -> int:
    """CPU time used so far by every thread of `pid`, in nanoseconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


class Setup:
    """One deployment: its glia, and the processes whose CPU counts."""

    def __init__(self, name: str, glia: Glia, parts: dict[str, int]) -> None:
        self.name = name
        self.glia = glia
        self.parts = parts
        self.samples: dict[str, list[float]] = {part: [] for part in parts}


@contextmanager
def setups(workdir: Path) -> Iterator[list[Setup]]:
    with ExitStack() as stack:
        (workdir / "nats-server").mkdir()
        nats = NatsServer.start(workdir / "nats-server")
        stack.callback(nats.stop)
        port = free_port()
        local = start_glia(stack, workdir, "local", glia_config(port, RUST_MODULES), port)
        port = free_port()
        placed = [{**m, "placement": "nats", "callbacks": ["check_event_for_spam"]} for m in RUST_MODULES]
        remote = glia_config(port, placed, bus={"type": "nats", "url": nats.url})
        on_nats = start_glia(stack, workdir, "nats", remote, port)
        argv = [str(glia_binary()), "worker", "--config", str(on_nats.config_path)]
        worker = Process("worker", argv, workdir / "worker.log")
        worker.start()
        stack.callback(worker.stop)
        port = free_port()
        hosted = glia_config(port, [{"module": DO_NOTHING, "name": "noop"}], python=python_section("localhost"))
        python = start_glia(stack, workdir, "python", hosted, port)
        serve_pids = {name: pid_of(g.process) for name, g in (("local", local), ("nats", on_nats), ("python", python))}
        yield [
            Setup("local", local, {"glia serve": serve_pids["local"]}),
            Setup(
                "nats",
                on_nats,
                {"glia serve": serve_pids["nats"], "glia worker": pid_of(worker), "nats-server": pid_of(nats.process)},
            ),
            Setup(
                "python",
                python,
                {"glia serve": serve_pids["python"], "python host": child_pids(serve_pids["python"])[0]},
            ),
        ]


def drive(glia: Glia, decisions: int, clients: int) -> None:
    """`decisions` callbacks to `glia` from `clients` connections at once."""
    body = json.dumps({"event": EVENT})
    headers = {"Authorization": f"Bearer {GLIA_TOKEN}", "Content-Type": "application/json"}
    host = glia.url.split("://", 1)[1]

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(host, timeout=30)
        for _ in range(n):
            conn.request("POST", PATH, body=body, headers=headers)
            response = conn.getresponse()
            reply = json.loads(response.read())
            assert response.status == 200 and reply["decision"] == "allow", reply
        conn.close()

    threads = [threading.Thread(target=client, args=(decisions // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(setup: Setup, decisions: int, clients: int) -> None:
    before = {part: cpu_ns(pid) for part, pid in setup.parts.items()}
    drive(setup.glia, decisions, clients)
    done = decisions // clients * clients
    for part, pid in setup.parts.items():
        setup.samples[part].append((cpu_ns(pid) - before[part]) / 1000 / done)


def report(all_setups: list[Setup], rounds: int, decisions: int) -> None:
    print(f"CPU per decision, medians of {rounds} interleaved rounds of {decisions} decisions")
    print(f"{'deployment':<10} {'part':<13} {'µs/decision':>12} {'decisions/s/core':>17}")
    for setup in all_setups:
        for part, values in setup.samples.items():
            us = statistics.median(values)
            print(f"{setup.name:<10} {part:<13} {us:>12.1f} {1e6 / us:>17,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--decisions", type=int, default=4000, help="decisions per round and deployment (default 4000)")
    parser.add_argument("--clients", type=int, default=8, help="connections at once (default 8)")
    args = parser.parse_args()
    print(f"glia binary: {glia_binary()}")
    with tempfile.TemporaryDirectory(prefix="glia-capacity-") as tmp, setups(Path(tmp)) as all_setups:
        for setup in all_setups:
            drive(setup.glia, 400, args.clients)  # warm up: connections, instances, hosts
        for _ in range(args.rounds):
            for setup in all_setups:
                measure(setup, args.decisions, args.clients)
        report(all_setups, args.rounds, args.decisions)


if __name__ == "__main__":
    main()
