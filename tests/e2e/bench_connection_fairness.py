"""Whether one peer holding many idle or slowloris connections keeps a second peer out: one
client on 127.0.0.1 keeps `--flood` connections open to glia (half idle, half dribbling a
request head a byte a second, each opened again a second after glia closes it), while a second
client on 127.0.0.2 opens a new connection every `--every` seconds and asks `GET /health`. The
second peer's connect-to-answer latency is measured, with and without the flood, for each
binary given, interleaved in rounds.

Not part of the test run. Usage (from the repository root; only the standard library):

    python3 tests/e2e/bench_connection_fairness.py --bin before=/tmp/glia-main \\
        --bin after=target/release/glia --rounds 3

Printed per binary: the probes' latency (median, p99, max over all rounds) with no flood and
under the flood, and how many probes got no answer within `--probe-timeout`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import GLIA_TOKEN, Glia, free_port


async def hold(port: int, dribble: bool, stop: asyncio.Event) -> None:
    """One attacking connection, opened again a second after glia closes it."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.1", 0))
        except OSError:
            await asyncio.sleep(1)
            continue
        try:
            head = b"GET /health HTTP/1.1\r\nHost: glia\r\nX-Slow: " if dribble else b""
            sent = 0
            while not stop.is_set() and not reader.at_eof():
                if dribble:
                    writer.write(head[sent : sent + 1] if sent < len(head) else b"a")
                    sent += 1
                    await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(4096), 1.0) == b"":
                        break
                except TimeoutError:
                    pass
        except OSError:
            pass
        finally:
            writer.close()
        await asyncio.sleep(1)


async def probe(port: int, timeout: float) -> float | None:
    """A new connection from 127.0.0.2 and `GET /health` on it: seconds until the answer."""
    start = time.perf_counter()

    async def exchange() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: glia\r\nConnection: close\r\n\r\n")
            await writer.drain()
            answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        finally:
            writer.close()

    try:
        await asyncio.wait_for(exchange(), timeout)
    except (TimeoutError, OSError):
        return None
    return time.perf_counter() - start


async def flood_until_stopped(port: int, flood: int, stop_file: Path) -> None:
    """The attacking client: `flood` connections held until `stop_file` exists."""
    stop = asyncio.Event()
    holders = [asyncio.create_task(hold(port, i % 2 == 1, stop)) for i in range(flood)]
    while not stop_file.exists():
        await asyncio.sleep(0.2)
    stop.set()
    for task in holders:
        task.cancel()
    await asyncio.gather(*holders, return_exceptions=True)


def attacker(port: int, flood: int, stop_file: Path) -> None:
    """The attacking client's process (its own, so its work does not delay the probes)."""
    asyncio.run(flood_until_stopped(port, flood, stop_file))


async def probes(port: int, count: int, every: float, timeout: float) -> list[float | None]:
    results = []
    for _ in range(count):
        results.append(await probe(port, timeout))
        await asyncio.sleep(every)
    return results


def measure(port: int, flood: int, args: argparse.Namespace, workdir: Path) -> list[float | None]:
    stop_file = workdir / f"stop-{flood}"
    process = multiprocessing.Process(target=attacker, args=(port, flood, stop_file))
    process.start()
    try:
        if flood:
            time.sleep(3)  # the flood is in place
        return asyncio.run(probes(port, args.probes, args.every, args.probe_timeout))
    finally:
        stop_file.touch()
        process.join(60)
        if process.is_alive():
            process.kill()


def summary(samples: list[float | None]) -> str:
    answered = sorted(s * 1000 for s in samples if s is not None)
    lost = len(samples) - len(answered)
    if not answered:
        return f"no answer ({lost} probes)"
    p99 = answered[min(len(answered) - 1, int(len(answered) * 0.99))]
    return (
        f"median {statistics.median(answered):8.1f} ms  p99 {p99:8.1f} ms  max {answered[-1]:8.1f} ms"
        f"  unanswered {lost}/{len(samples)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", action="append", required=True, help="NAME=PATH of a glia binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flood", type=int, default=2000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--every", type=float, default=0.25)
    parser.add_argument("--probe-timeout", type=float, default=20.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binaries = dict(b.split("=", 1) for b in args.bin)
    results: dict[tuple[str, int], list[float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="glia-fairness-") as tmp:
        for round_ in range(args.rounds):
            for name, path in binaries.items():
                workdir = Path(tmp) / f"{name}-{round_}"
                workdir.mkdir()
                port = free_port()
                config = {"listen": f"127.0.0.1:{port}", "auth_token": GLIA_TOKEN, "modules": []}
                glia = Glia.start(Path(path), workdir, config, port)
                try:
                    for flood in (0, args.flood):
                        got = measure(port, flood, args, workdir)
                        results.setdefault((name, flood), []).extend(got)
                        print(f"round {round_} {name:8} flood {flood:5}: {summary(got)}", flush=True)
                finally:
                    glia.stop()
    print("\nall rounds:")
    for (name, flood), samples in results.items():
        print(f"{name:8} flood {flood:5}: {summary(samples)}")


if __name__ == "__main__":
    main()
