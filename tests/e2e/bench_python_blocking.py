"""What several host processes per Python module buy when one call blocks: the same module
(`oracle/scripted_synapse.py:SometimesBlocking`, whose `user_may_create_room` blocks its
process's thread for `--block` seconds for one user and answers at once for the others) in
glia with `python.processes: 1` and with `processes: N`, side by side in one run.

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh):

    GLIA_BIN=target/release/glia tests/e2e/.venv/bin/python tests/e2e/bench_python_blocking.py --rounds 15

Each round, for each glia in turn (interleaved, so machine load drifts hit both alike), and
each case in turn:
- `blocked`: one blocking call is sent, then `--calls` fast calls from `--callers` threads;
- `clear`: the same fast calls with nothing blocking.
Measured per round: the fast calls' throughput (calls per second of wall time) and their
median round trip. Printed: the medians over rounds, and each one's ratio to processes 1's
`clear` case.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from differential import oracle_env
from harness import GLIA_TOKEN, Glia, free_port, glia_binary
from hosting import python_section

MODULE = "scripted_synapse.SometimesBlocking"
PATH = "/_glia/v1/callbacks/user_may_create_room"
HEADERS = {"Authorization": f"Bearer {GLIA_TOKEN}", "Content-Type": "application/json"}


def body(user: str) -> str:
    return json.dumps({"user_id": user, "room_config": {}})


@contextmanager
def glias(workdir: Path, processes: list[int], block_s: float) -> Iterator[dict[str, Glia]]:
    """One glia per process count, each hosting the module."""
    with ExitStack() as stack:
        running: dict[str, Glia] = {}
        for n in processes:
            port = free_port()
            directory = workdir / f"processes-{n}"
            directory.mkdir()
            config = {
                "listen": f"127.0.0.1:{port}",
                "auth_token": GLIA_TOKEN,
                "python": {**python_section("localhost"), "processes": n},
                "modules": [{"module": MODULE, "name": "blocky", "timeout": "30s", "config": {"block_s": block_s}}],
            }
            glia = Glia.start(glia_binary(), directory, config, port, env=oracle_env())
            stack.callback(glia.stop)
            running[f"processes {n}"] = glia
        yield running


def call(conn: http.client.HTTPConnection, user: str) -> float:
    """One call on a kept-alive connection; its round trip in ms."""
    start = time.perf_counter()
    conn.request("POST", PATH, body(user), HEADERS)
    response = conn.getresponse()
    payload = response.read()
    assert response.status == 200, payload
    assert json.loads(payload)["decision"] == "allow", payload
    return (time.perf_counter() - start) * 1000


def fast_calls(glia: Glia, calls: int, callers: int) -> tuple[float, list[float]]:
    """`calls` fast calls from `callers` threads: calls per second, and each round trip."""
    address = glia.url.split("://", 1)[1]
    share = calls // callers

    def caller(_: int) -> list[float]:
        conn = http.client.HTTPConnection(address, timeout=60)
        try:
            return [call(conn, "@fast:localhost") for _ in range(share)]
        finally:
            conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        samples = [ms for part in pool.map(caller, range(callers)) for ms in part]
    return len(samples) / (time.perf_counter() - start), samples


def one_round(glia: Glia, blocked: bool, calls: int, callers: int) -> tuple[float, float]:
    """One case: (fast calls per second, their median round trip in ms)."""
    blocker = None
    if blocked:
        conn = http.client.HTTPConnection(glia.url.split("://", 1)[1], timeout=60)
        blocker = threading.Thread(target=call, args=(conn, "@blocker:localhost"))
        blocker.start()
        time.sleep(0.05)  # let the blocking call reach its host first
    rate, samples = fast_calls(glia, calls, callers)
    if blocker is not None:
        blocker.join()
    return rate, statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first (default 2)")
    parser.add_argument("--calls", type=int, default=400, help="fast calls per case and round (default 400)")
    parser.add_argument("--callers", type=int, default=8, help="threads sending them (default 8)")
    parser.add_argument("--block", type=float, default=1.0, help="seconds the blocking call blocks (default 1)")
    parser.add_argument("--processes", type=int, default=4, help="host processes of the second glia (default 4)")
    args = parser.parse_args()
    print(f"glia binary: {glia_binary()}")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="glia-bench-") as tmp,
        glias(Path(tmp), [1, args.processes], args.block) as running,
    ):
        for i in range(args.warmup + args.rounds):
            for name, glia in running.items():
                for case in ("blocked", "clear"):
                    measured = one_round(glia, case == "blocked", args.calls, args.callers)
                    if i >= args.warmup:
                        results.setdefault((name, case), []).append(measured)
    report(results, args)


def report(results: dict[tuple[str, str], list[tuple[float, float]]], args: Any) -> None:
    base = statistics.median(rate for rate, _ in results[("processes 1", "clear")])
    print(
        f"\n== {args.calls} fast calls from {args.callers} threads per case, {args.rounds} rounds, "
        f"interleaved; the blocking call blocks {args.block} s"
    )
    print(f"{'glia':<14}{'case':<9}{'calls/s':>9}{'x clear@1':>11}{'median ms':>11}")
    for (name, case), values in results.items():
        rate = statistics.median(r for r, _ in values)
        latency = statistics.median(ms for _, ms in values)
        print(f"{name:<14}{case:<9}{rate:>9.0f}{rate / base:>11.2f}{latency:>11.2f}")


if __name__ == "__main__":
    main()
