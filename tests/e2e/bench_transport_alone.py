"""The bridge's transport alone: forwarded callbacks per second through `transport.Pool`, one
after another on one kept-alive connection, to a real glia over its Unix socket (or TCP), with
no Synapse around it.

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh and a glia
build):

    GLIA_BIN=target/release/glia tests/e2e/.venv/bin/python tests/e2e/bench_transport_alone.py \\
        [--against OTHER/transport.py ...] [--rounds 10] [--requests 2000] [--tcp]

`--against` (repeatable) loads another `transport.py` (another checkout's, such as the one
before a change) beside this checkout's, as a separate module in the same process: all then
send to the same glia, round by round in turn (the order reversed every other round), so
machine load drifts over all alike. Each request is
what the bridge sends for `check_event_for_spam` (a JSON event, a request id, the token), and
glia runs `list_spam_checker` in process. Prints each transport's median requests per second
over the rounds and its ratio to this checkout's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from twisted.internet import defer, reactor

from harness import GLIA_TOKEN, Glia, free_port, glia_binary, mxid

HERE = Path(__file__).resolve().parent
OWN = HERE.parent.parent / "deploy" / "synapse-bridge" / "glia_synapse" / "transport.py"
PATH = b"/_glia/v1/callbacks/check_event_for_spam"
EVENT = {
    "event": {
        "type": "m.room.message",
        "room_id": "!bench:localhost",
        "sender": "@bench:localhost",
        "event_id": "$bench-event",
        "origin_server_ts": 1764000000000,
        "content": {"msgtype": "m.text", "body": "benchmark message"},
        "unsigned": {},
    }
}


def load(path: Path, name: str) -> ModuleType:
    """`path` as a module of its own (transport.py imports nothing of the bridge's)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def one_round(pool: Any, requests: int, body: bytes) -> float:
    """Requests per second for `requests` requests sent one after another."""
    headers = [
        (b"X-Request-Id", b"bench-0123456789abcdef"),
        (b"Authorization", f"Bearer {GLIA_TOKEN}".encode()),
        (b"Content-Type", b"application/json"),
    ]
    started = time.perf_counter()
    for _ in range(requests):
        response = await pool.request(b"POST", PATH, headers, body)
        if response.status != 200:
            raise RuntimeError(f"glia answered {response.status}: {response.body[:300]!r}")
    return requests / (time.perf_counter() - started)


async def run(transports: dict[str, ModuleType], url: str, rounds: int, requests: int) -> dict[str, list[float]]:
    body = json.dumps(EVENT).encode()
    pools = {name: module.Pool(module.parse_address(url), reactor, 5.0) for name, module in transports.items()}
    for pool in pools.values():  # warm up: the connection, glia's caches
        await one_round(pool, max(requests // 10, 10), body)
    rates: dict[str, list[float]] = {name: [] for name in pools}
    for round_ in range(rounds):
        order = list(pools) if round_ % 2 == 0 else list(reversed(pools))
        for name in order:
            rates[name].append(await one_round(pools[name], requests, body))
    for pool in pools.values():
        pool.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--against", type=Path, action="append", default=[], help="another transport.py to compare (repeatable)"
    )
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds per transport (default 10)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round (default 2000)")
    parser.add_argument("--tcp", action="store_true", help="glia over TCP instead of its Unix socket")
    args = parser.parse_args()
    transports = {"this": load(OWN, "transport_this")}
    print(f"glia binary: {glia_binary()}\nthis: {OWN}")
    for i, path in enumerate(args.against, 1):
        transports[f"against{i}"] = load(path, f"transport_against{i}")
        print(f"against{i}: {path}")
    with tempfile.TemporaryDirectory(prefix="glia-bench-transport-alone-") as tmp:
        port = free_port()
        socket_path = Path(tmp) / "glia.sock"
        checker = {"module": "list_spam_checker", "config": {"evil_users": [mxid("nobody")]}}
        config = {
            "auth_token": GLIA_TOKEN,
            "modules": [checker],
            "listen": f"127.0.0.1:{port}",
            "listen_unix": str(socket_path),
        }
        glia = Glia.start(glia_binary(), Path(tmp), config, port)
        try:
            url = glia.url if args.tcp else f"unix:{socket_path}"
            done = defer.ensureDeferred(run(transports, url, args.rounds, args.requests))
            results: list[Any] = []
            done.addBoth(results.append).addBoth(lambda _: reactor.stop())
            reactor.run()
        finally:
            glia.stop()
    result = results[0]
    if not isinstance(result, dict):
        result.raiseException()
    print(f"{'transport':<10}{'rounds':>7}{'median req/s':>14}{'min':>9}{'max':>9}{'µs/request':>12}")
    medians = {}
    for name, values in result.items():
        medians[name] = statistics.median(values)
        print(
            f"{name:<10}{len(values):>7}{medians[name]:>14.0f}{min(values):>9.0f}{max(values):>9.0f}"
            f"{1e6 / medians[name]:>12.1f}"
        )
    for name, median in medians.items():
        if name != "this":
            print(f"{name} / this: {median / medians['this']:.3f}x the requests per second")


if __name__ == "__main__":
    main()
