"""What a slow config check does to a running glia (issue 25, item 2): a Python module whose
`parse_config` sleeps `--check-delay` seconds (the scripted module's `check_delay`) is changed
and the config reloaded, once by `POST /_glia/v1/admin/reload` and once by SIGHUP, while
`--callers` clients ask unrelated decisions (`user_may_create_room`, answered by the native
`demo` module) over kept-alive connections. Then a SIGHUP with the slow check, and a SIGTERM
1 s later: how long glia takes to exit, and its exit status.

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh):

    tests/e2e/.venv/bin/python tests/e2e/bench_reload_slow_check.py \\
        --bin before=/tmp/glia-main --bin after=target/release/glia --rounds 2

Printed per binary and way of reloading: how long the reload took, and the decisions asked
while it ran: how many, their latency (p50, p99, max) and how many failed (not a 200).
"""

from __future__ import annotations

import argparse
import http.client
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import GLIA_TOKEN, Glia, free_port, http_request, wait_until
from hosting import ORACLE, python_path_env, python_section
from test_python_host import scripted, write_script

ROOM = b'{"user_id": "@alice:example.com", "room_config": {}}'


class Load:
    """Callers asking `user_may_create_room` in a loop, each on its own kept-alive connection;
    every answer recorded as (sent at, seconds taken, ok)."""

    def __init__(self, port: int, callers: int) -> None:
        self.samples: list[tuple[float, float, bool]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._caller, args=(port,)) for _ in range(callers)]
        for thread in self._threads:
            thread.start()

    def _caller(self, port: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {GLIA_TOKEN}", "Content-Type": "application/json"}
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                connection.request("POST", "/_glia/v1/callbacks/user_may_create_room", ROOM, headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with self._lock:
                self.samples.append((sent, time.monotonic() - sent, ok))
        connection.close()

    def between(self, start: float, end: float) -> list[tuple[float, float, bool]]:
        with self._lock:
            return [s for s in self.samples if start <= s[0] <= end]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def describe(samples: list[tuple[float, float, bool]]) -> str:
    if not samples:
        return "no decisions asked"
    times = sorted(s[1] * 1000 for s in samples)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    failed = sum(1 for s in samples if not s[2])
    return (
        f"{len(samples):6} decisions: p50 {statistics.median(times):7.1f} ms  p99 {p99:8.1f} ms  "
        f"max {times[-1]:8.1f} ms  failed {failed}"
    )


def config_for(port: int, workdir: Path, check_delay: float) -> dict[str, Any]:
    slow = scripted("slow", workdir, ["user_may_invite"], check_delay=check_delay)
    return {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "python": python_section("example.com"),
        "modules": [{"module": "demo", "config": {"denied_users": ["@evil:hs"]}}, slow],
    }


def reload_once(glia: Glia, port: int, workdir: Path, delay: float, by_signal: bool) -> float:
    """Changes the slow module's entry and reloads; returns when the reload is done."""
    glia.config_path.write_text(yaml.safe_dump(config_for(port, workdir, delay), sort_keys=False))
    log = workdir / "glia.log"

    def done() -> int:
        text = log.read_text(errors="replace")
        return text.count("config reloaded") + text.count("config reload refused")

    before = done()
    start = time.monotonic()
    if by_signal:
        glia.process.signal(signal.SIGHUP)
        wait_until(lambda: done() > before, 180, "the SIGHUP reload")
    else:
        headers = {"Authorization": f"Bearer {GLIA_TOKEN}"}
        status, _, raw = http_request("POST", f"{glia.url}/_glia/v1/admin/reload", b"", headers, timeout=180)
        print(f"    reload answered {status}: {raw[:160]!r}")
    return time.monotonic() - start


def one_round(name: str, binary: Path, workdir: Path, args: argparse.Namespace) -> None:
    workdir.mkdir()
    write_script(workdir, {})
    port = free_port()
    glia = Glia.start(binary, workdir, config_for(port, workdir, 0), port, env=python_path_env(ORACLE))
    try:
        load = Load(port, args.callers)
        time.sleep(2)
        for n, by_signal in enumerate((False, True)):
            start = time.monotonic()
            took = reload_once(glia, port, workdir, args.check_delay + n / 100, by_signal)
            way = "SIGHUP" if by_signal else "POST  "
            print(f"{name:8} {way} reload took {took:6.1f} s; {describe(load.between(start, start + took))}")
        load.stop()
        glia.config_path.write_text(yaml.safe_dump(config_for(port, workdir, args.check_delay + 0.5), sort_keys=False))
        glia.process.signal(signal.SIGHUP)
        time.sleep(1)
        popen = glia.process.popen
        assert popen is not None
        start = time.monotonic()
        popen.send_signal(signal.SIGTERM)
        code = popen.wait(120)
        print(f"{name:8} SIGTERM 1 s after a SIGHUP: exited {code} after {time.monotonic() - start:5.1f} s")
    finally:
        glia.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", action="append", required=True, help="NAME=PATH of a glia binary")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--check-delay", type=float, default=8.0)
    args = parser.parse_args()
    binaries = dict(b.split("=", 1) for b in args.bin)
    with tempfile.TemporaryDirectory(prefix="glia-slow-check-") as tmp:
        for round_ in range(args.rounds):
            for name, path in binaries.items():
                one_round(name, Path(path), Path(tmp) / f"{name}-{round_}", args)


if __name__ == "__main__":
    main()
