"""Added latency per message send: Synapse with the glia bridge (glia running the seed
modules) against the same Synapse with no modules, measured in one run.

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh):

    GLIA_BIN=target/release/glia tests/e2e/.venv/bin/python tests/e2e/bench_send.py --sends 200

Five Synapses run side by side (same version and config, SQLite): `none` (no modules),
`none-again` (the same: the A/A noise of the run), `glia` (the bridge; glia with the e2e seed
modules, including event_censorer and its censor service), `glia-no-censor` (the same without
event_censorer, so no extra HTTP hop per event) and `embedded-no-censor` (those modules in glia
embedded in Synapse's process, docs/embedded.md; its wheel from `tests/e2e/embedded.sh`,
`GLIA_EMBEDDED_PROFILE=release` for a benchmark). With `--baseline-python PYTHON` a sixth,
`embedded-baseline`, runs the embedded setup under another venv's interpreter (another build of
the wheel, to compare two builds in one run); `--setups` runs only the named ones (`none`
always, and `embedded-baseline` whenever asked for). Each user sends `--sends` messages with
`PUT /rooms/{id}/send` over a kept-alive connection, the five interleaved round by round so
machine load drifts hit all alike, after `--warmup` unmeasured sends each. With `--breakdown`
the bridge logs at DEBUG (which costs a little) and the median time of each forwarded callback
is printed too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    CensorService,
    Client,
    Glia,
    Synapse,
    bridge_module,
    embedded_module,
    free_port,
    glia_binary,
    glia_config,
)


class Sender:
    """One user sending messages into their own room over one kept-alive connection."""

    def __init__(self, name: str, client: Client) -> None:
        self.name = name
        self.client = client
        created = client.create_room()
        assert created.status == 200, created
        self.room_id = created.body["room_id"]
        host = client.base_url.split("://", 1)[1]
        self.conn = http.client.HTTPConnection(host, timeout=30)
        self.samples_ms: list[float] = []

    def send(self, record: bool = True) -> None:
        """One `PUT /send`, timed from request to full response."""
        body = json.dumps({"msgtype": "m.text", "body": "benchmark message"})
        headers = {"Authorization": f"Bearer {self.client.token}", "Content-Type": "application/json"}
        elapsed = timed(self.conn, f"{self.name}: send", "PUT", self.client.send_path(self.room_id), body, headers)
        if record:
            self.samples_ms.append(elapsed)


def timed(
    conn: http.client.HTTPConnection, what: str, method: str, path: str, body: str, headers: dict[str, str]
) -> float:
    """Milliseconds from sending one request over `conn` to its full response; fails unless 200."""
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"{what} answered {response.status} {payload!r}")
    return elapsed


def interleaved_sends(running: dict[str, Synapse], sends: int, warmup: int) -> list[Sender]:
    """A user per Synapse sending `sends` timed messages (after `warmup` untimed ones), round
    by round, so machine load drifts hit every setup alike."""
    senders = [Sender(name, synapse.register(f"bench_{name.replace('-', '_')}")) for name, synapse in running.items()]
    for sender in senders:
        for _ in range(warmup):
            sender.send(record=False)
    for _ in range(sends):
        for sender in senders:
            sender.send()
    return senders


def percentile(samples: list[float], fraction: float) -> float:
    """The `fraction` quantile (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


#: Every setup, in the order they run.
SETUPS = ("none", "none-again", "glia", "glia-no-censor", "embedded-no-censor", "embedded-baseline")


@contextmanager
def servers(
    workdir: Path, bridge_log_level: str, setups: Collection[str] = SETUPS, baseline_python: str | None = None
) -> Iterator[dict[str, Synapse]]:
    """The Synapses of `setups` (and the glias and censor behind two of them)."""
    with ExitStack() as stack:
        censor = CensorService().start()
        stack.callback(censor.stop)
        synapses: dict[str, list[dict[str, Any]]] = {"none": [], "none-again": []}
        for name, with_censor in (("glia", True), ("glia-no-censor", False)):
            if name not in setups:
                continue
            port = free_port()
            glia_dir = workdir / f"glia-{name}"
            glia_dir.mkdir()
            glia = Glia.start(glia_binary(), glia_dir, glia_config(port, censor.url, censor=with_censor), port)
            stack.callback(glia.stop)
            synapses[name] = [bridge_module(glia.url, timeout=10)]
        embedded = workdir / "glia-embedded.yaml"
        embedded.write_text(yaml.safe_dump(glia_config(free_port(), censor.url, censor=False), sort_keys=False))
        synapses["embedded-no-censor"] = [embedded_module(embedded)]
        pythons = {name: sys.executable for name in synapses}
        if baseline_python is not None:
            synapses["embedded-baseline"] = [embedded_module(embedded)]
            pythons["embedded-baseline"] = baseline_python
        running = {}
        for name, modules in synapses.items():
            if name not in ("none", "embedded-baseline") and name not in setups:
                continue
            python = pythons[name]
            synapse = Synapse.start(
                workdir / f"synapse-{name}", modules, bridge_log_level=bridge_log_level, python=python
            )
            stack.callback(synapse.stop)
            running[name] = synapse
        yield running


def report(senders: list[Sender]) -> None:
    """Median, p90 and mean per setup, and the latency added over `none`."""
    base = senders[0]
    print(f"{'setup':<19}{'n':>5}{'median ms':>11}{'p90 ms':>9}{'mean ms':>9}{'added median':>14}{'added p90':>11}")
    base_median, base_p90 = statistics.median(base.samples_ms), percentile(base.samples_ms, 0.9)
    for sender in senders:
        samples = sender.samples_ms
        median, p90 = statistics.median(samples), percentile(samples, 0.9)
        added = "" if sender is base else f"{median - base_median:>+14.2f}{p90 - base_p90:>+11.2f}"
        print(f"{sender.name:<19}{len(samples):>5}{median:>11.2f}{p90:>9.2f}{statistics.mean(samples):>9.2f}{added}")


DECIDED = re.compile(r"glia decided (\w+) \(\S+\) in ([0-9.]+) ms")


def breakdown(running: dict[str, Synapse]) -> None:
    """Median milliseconds per forwarded callback, from the bridge's DEBUG log."""
    for name, synapse in running.items():
        times: dict[str, list[float]] = {}
        for callback, ms in DECIDED.findall(synapse.log()):
            times.setdefault(callback, []).append(float(ms))
        if times:
            medians = ", ".join(f"{cb} {statistics.median(v):.2f} ms (n={len(v)})" for cb, v in sorted(times.items()))
            print(f"{name}: per callback, median: {medians}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=200, help="measured sends per setup (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured sends per setup first (default 20)")
    parser.add_argument("--breakdown", action="store_true", help="also time each forwarded callback")
    parser.add_argument("--baseline-python", help="also run the embedded setup under this interpreter")
    parser.add_argument("--setups", default=",".join(SETUPS), help="the setups to run, comma-separated")
    args = parser.parse_args()
    setups = args.setups.split(",")
    if any(name.startswith("glia") for name in setups):
        print(f"glia binary: {glia_binary()}")
    level = "DEBUG" if args.breakdown else "INFO"
    with (
        tempfile.TemporaryDirectory(prefix="glia-bench-") as tmp,
        servers(Path(tmp), level, setups, args.baseline_python) as running,
    ):
        senders = interleaved_sends(running, args.sends, args.warmup)
        report(senders)
        if args.breakdown:
            breakdown(running)


if __name__ == "__main__":
    main()
