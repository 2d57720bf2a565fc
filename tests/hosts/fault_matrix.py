"""glia across hosts with the network failing: the fault matrix (docs/fault-matrix.md).

Run as root by tests/hosts/run.sh (the README's test command runs it). The hosts are network
namespaces on one bridge (`netns.py`), glia's parts run in them (`deployment.py`), and the
"synapse" host sends 100 decisions a second through the bridge's own client (`loadgen.py`).
Each phase keeps the load steady, does one fault for a few seconds, ends it, and waits until
the part it hit answers again by its module; the time from the fault's end to that answer is
the recovery time (waited for up to a liveness bound, never asserted as a speed). At the end the
matrix is printed (fault x part: answered by the module / by its failure policy / lost / late),
and the run fails if any decision was lost, late, wrong, answered twice or never answered, or a
part did not recover. Namespaces, links, rules and processes are removed however it ends.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import wait_until

from deployment import COORDINATORS, HOSTS, NATS_HOSTS, WORKERS, Deployment
from matrix import Records, Row, decided_by_both, problems, render, tally
from netns import Network

#: Load before each fault, seconds.
STEADY_S = 2.0
#: How long each fault lasts, seconds.
HOLD_S = 3.0
#: Load after the recovery, in the same phase: what the recovery still moves (the bridge
#: going back to a coordinator it backed off from) belongs to this phase, not the next.
SETTLE_S = 1.0
#: How long a part may take to answer again after its fault ends before the run fails: a
#: liveness bound, not a speed claim. The bridge backs off a coordinator it found down for up
#: to 30 s (`glia_synapse.failover.MAX_BACKOFF`), so that path gets longer.
RECOVERY_BOUND_S = 30.0
COORDINATOR_BOUND_S = 45.0
PARTS = ["worker", "python"]
Check = Callable[[], "float | None"]


@dataclass
class Fault:
    """One phase's fault: how it starts and ends, and when its affected path answers again."""

    name: str
    affected: str
    begin: Callable[[], None]
    end: Callable[[], None]
    #: Called as the fault ends (with that time), before `end`: returns a check giving the time
    #: of the affected path's first module answer since, once there is one.
    watch: Callable[[float], Check]
    bound: float = RECOVERY_BOUND_S


def worker_back(dep: Deployment, host: str) -> Callable[[float], Check]:
    """Recovered when `host`'s worker has decided more than when the fault ended (its
    `/metrics`; a killed worker starts again from 0)."""

    def watch(since: float) -> Check:
        baseline = max(dep.worker_answers(host), 0)
        return lambda: time.monotonic() if dep.worker_answers(host) > baseline else None

    return watch


def faults(dep: Deployment, records: Records) -> list[Fault]:
    """The phases, in order. Each leaves every part running again."""
    net = dep.net
    coord1 = dep.url("coord1")

    def kill(host: str) -> Callable[[], None]:
        def killed() -> None:
            net.kill(host)
            dep.forget(host)

        return killed

    def lag(sig: int) -> Callable[[], None]:
        return lambda: next(p for p in dep.processes["worker2"] if p.name == "lagproxy").signal(sig)

    def via_coord1(since: float) -> Check:
        return lambda: records.first_after(since, coordinator=coord1)

    def routed(host: str) -> Callable[[float], Check]:
        return lambda since: lambda: time.monotonic() if dep.routes(host) >= 2 else None

    def python_back(since: float) -> Check:
        return lambda: records.first_after(since, part="python")

    busiest = max(NATS_HOSTS, key=lambda h: len(dep.clients(h)))
    return [
        Fault("none (steady load)", "-", lambda: None, lambda: None, lambda since: lambda: None),
        Fault(
            "worker1 partitioned from the NATS cluster",
            "worker1 decides",
            lambda: net.partition("worker1", NATS_HOSTS),
            lambda: net.heal("worker1"),
            worker_back(dep, "worker1"),
        ),
        Fault(
            "coord1 partitioned from the synapse host",
            "decided via coord1",
            lambda: net.partition("coord1", ["synapse"]),
            lambda: net.heal("coord1"),
            via_coord1,
            COORDINATOR_BOUND_S,
        ),
        Fault(
            "50-200 ms latency, 5% stalls on worker2 <-> nats2",
            "worker2 decides",
            lag(signal.SIGUSR1),
            lag(signal.SIGUSR2),
            worker_back(dep, "worker2"),
        ),
        Fault(
            "worker1 host killed (SIGKILL), restarted",
            "worker1 decides",
            kill("worker1"),
            lambda: dep.start_worker("worker1"),
            worker_back(dep, "worker1"),
        ),
        Fault(
            f"{busiest} killed ({len(dep.clients(busiest))} clients), restarted",
            f"{busiest} routed",
            kill(busiest),
            lambda: dep.start_nats(busiest),
            routed(busiest),
        ),
        Fault(
            "coord1 host killed, restarted",
            "decided via coord1",
            kill("coord1"),
            lambda: dep.start_coordinator("coord1"),
            via_coord1,
            COORDINATOR_BOUND_S,
        ),
        Fault(
            "python host killed, restarted",
            "python decides",
            kill("python"),
            dep.start_python_host,
            python_back,
        ),
    ]


def run_phase(dep: Deployment, fault: Fault) -> Row:
    """Steady load, the fault, its end, then waits for the affected path's recovery."""
    row = Row(fault.name, fault.affected, time.monotonic())
    before = {w: dep.worker_answers(w) for w in WORKERS}
    time.sleep(STEADY_S)
    row.fault_at = time.monotonic()
    fault.begin()
    time.sleep(HOLD_S)
    row.fault_end = time.monotonic()
    check = fault.watch(row.fault_end)
    fault.end()
    if fault.affected != "-":
        until = row.fault_end + fault.bound
        while time.monotonic() < until:
            at = check()
            if at is not None:
                row.recovery_s = at - row.fault_end
                break
            time.sleep(0.05)
    time.sleep(SETTLE_S)
    row.end = time.monotonic()
    after = {w: dep.worker_answers(w) for w in WORKERS}
    # A restarted worker counts from 0 again.
    row.workers = {w: after[w] - before[w] if after[w] >= before[w] >= 0 else after[w] for w in WORKERS}
    recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.2f} s"
    print(f"{fault.name}: recovery {recovery}; answered by worker: {row.workers}", flush=True)
    return row


def run(workdir: Path, rate: float) -> int:
    """Builds the hosts, starts every part and the load, runs the phases, tears it all down."""
    net = Network(HOSTS)
    dep = Deployment(net, workdir)
    try:
        net.create()
        dep.start_everything()
        records = Records(dep.start_load(rate))
        wait_until(
            lambda: all(records.first_after(0, part=p) for p in PARTS),
            60,
            "the first decisions of the load",
            lambda: "\n".join(p.tail() for p in dep.processes["synapse"]),
        )
        rows = [run_phase(dep, fault) for fault in faults(dep, records)]
        dep.stop_load()
    except BaseException:
        # The logs go with the temporary directory: what CI shows is what is printed.
        for processes in dep.processes.values():
            for process in processes:
                print(process.tail(15), file=sys.stderr)
        raise
    finally:
        dep.stop_all()
        net.destroy()
    return report(rows, records, dep)


def report(rows: list[Row], records: Records, dep: Deployment) -> int:
    """Prints the matrix and what went wrong; returns the exit status."""
    all_records = records.refresh()
    names = {dep.url(h): h for h in COORDINATORS}
    logs = {h: dep.workdir / f"{h}-decisions.jsonl" for h in COORDINATORS}
    tally(rows, all_records, names, list(logs.values()))
    print(f"\n{len(all_records)} decisions; decided by both coordinators (resent): {decided_by_both(logs)}")
    print(render(rows, PARTS))
    found = problems(rows, all_records, logs)
    for problem in found:
        print(f"FAILED: {problem}", file=sys.stderr)
    if found:
        print("(tests/hosts/run.sh --keep DIR keeps every process's log and the records)", file=sys.stderr)
    return 1 if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100, help="decisions a second (default 100)")
    parser.add_argument("--keep", type=Path, help="write the logs here (kept) instead of a temporary directory")
    args = parser.parse_args()
    # SIGTERM (a CI timeout) ends the run through its clean-up, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        sys.exit(run(args.keep, args.rate))
    with tempfile.TemporaryDirectory(prefix="glia-fault-matrix-") as tmp:
        sys.exit(run(Path(tmp), args.rate))


if __name__ == "__main__":
    main()
