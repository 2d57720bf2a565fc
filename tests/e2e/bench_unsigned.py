"""What `add_field_to_unsigned` costs: `GET /rooms/{id}/messages?limit=50` on a room of 50
messages, with Synapse calling the callback once per event served, measured side by side.

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh):

    GLIA_BIN=target/release/glia tests/e2e/.venv/bin/python tests/e2e/bench_unsigned.py --rounds 100

Five Synapses run side by side (same version and config, SQLite), each with one user and one
room of 50 messages:

- `none`: no modules;
- `native`: a native module whose `add_field_to_unsigned` returns `{}` and does nothing else
  (`oracle/scripted_synapse.py:DoNothingUnsigned`);
- `glia-python`: the bridge and glia, with the very module of `native` in glia's Python host
  (a child process, over its pipe);
- `glia-rust`: the bridge and glia with the built-in `chaos` module answering `{}` for
  `add_field_to_unsigned`, in glia's own process (no NATS);
- `embedded`: the same `chaos` module (`instances: per_thread`) in glia embedded in Synapse's
  process (`glia_embedded.GliaEmbedded`, no bridge, no glia process). Build its wheel in the
  release profile first: `GLIA_EMBEDDED_PROFILE=release tests/e2e/embedded.sh` (the test run
  installs the dev build).

With `--baseline-python PYTHON`, a sixth, `embedded-baseline`, runs the `embedded` setup under
another venv's interpreter (another build of the wheel, to compare two builds in one run);
`--setups` runs only the named ones (`none` and `native` always).

Each user fetches the page over a kept-alive connection, the five interleaved round by round
so machine load drifts hit all alike, after `--warmup` unmeasured rounds. Prints the median,
p90 and mean per setup, and each median's ratio to `none` and to `native`; with
`--breakdown`, the bridge's median time per forwarded call (from its DEBUG log).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import Sender, breakdown, percentile
from differential import glia_knows_the_modules, oracle_env
from harness import (
    GLIA_TOKEN,
    Client,
    Glia,
    Synapse,
    bridge_module,
    embedded_module,
    free_port,
    glia_binary,
    wait_until,
)
from hosting import python_section

MESSAGES = 50
UNSIGNED = {"noop": ["add_field_to_unsigned"]}


class Reader(Sender):
    """One user reading their room's last 50 messages over one kept-alive connection (their
    room, connection and samples are bench_send's)."""

    def __init__(self, name: str, client: Client) -> None:
        super().__init__(name, client)
        for i in range(MESSAGES):
            sent = client.send_text(self.room_id, f"message {i}")
            assert sent.status == 200, sent
        self.path = f"/_matrix/client/v3/rooms/{quote(self.room_id)}/messages?dir=b&limit={MESSAGES}"

    def read(self, record: bool = True) -> None:
        """One `GET /messages`, timed from request to full response."""
        headers = {"Authorization": f"Bearer {self.client.token}"}
        started = time.perf_counter()
        self.conn.request("GET", self.path, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200 or payload.count(b'"m.room.message"') != MESSAGES:
            raise RuntimeError(f"{self.name}: /messages answered {response.status} {payload[:300]!r}")
        if record:
            self.samples_ms.append(elapsed)


def glia_config(port: int, modules: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {"listen": f"127.0.0.1:{port}", "auth_token": GLIA_TOKEN, "modules": modules, **more}


#: Every setup, in the order they run.
SETUPS = ("none", "native", "glia-python", "glia-rust", "embedded", "embedded-baseline")
CHAOS = {"module": "chaos", "name": "noop", "config": {"callbacks": {"add_field_to_unsigned": {"answer": {}}}}}


@contextmanager
def servers(
    workdir: Path, bridge_log_level: str, setups: Collection[str] = SETUPS, baseline_python: str | None = None
) -> Iterator[dict[str, Synapse]]:
    """The Synapses of `setups`, and the glias behind two of them (the embedded ones embed their own)."""
    with ExitStack() as stack:
        wanted: dict[str, tuple[list[dict[str, Any]], dict[str, str] | None, str]] = {
            "none": ([], None, sys.executable),
            "native": ([{"module": "scripted_synapse.DoNothingUnsigned", "config": {}}], oracle_env(), sys.executable),
        }
        for name, bridged in _bridged_glias(workdir, setups, stack).items():
            wanted[name] = ([bridge_module(bridged.url, timeout=10, web_resource_paths=[])], None, sys.executable)
        embedded = [embedded_module(_embedded_config(workdir, CHAOS))]
        if "embedded" in setups:
            wanted["embedded"] = (embedded, None, sys.executable)
        if baseline_python is not None:
            wanted["embedded-baseline"] = (embedded, None, baseline_python)
        running = {}
        for name, (modules, env, python) in wanted.items():
            synapse = Synapse.start(
                workdir / f"synapse-{name}", modules, bridge_log_level=bridge_log_level, env=env, python=python
            )
            stack.callback(synapse.stop)
            running[name] = synapse
        yield running


def _bridged_glias(workdir: Path, setups: Collection[str], stack: ExitStack) -> dict[str, Glia]:
    """The glia processes of the bridge's setups among `setups`, stopped with `stack`."""
    started = {}
    if "glia-python" in setups:
        port = free_port()
        do_nothing = {"module": "scripted_synapse.DoNothingUnsigned", "name": "noop", "config": {}}
        config = glia_config(port, [do_nothing], python=python_section("localhost"))
        python = Glia.start(glia_binary(), _dir(workdir, "glia-python"), config, port, env=oracle_env())
        stack.callback(python.stop)
        wait_until(lambda: glia_knows_the_modules(python, UNSIGNED), 20, "glia planning the Python module")
        started["glia-python"] = python
    if "glia-rust" in setups:
        port = free_port()
        rust = Glia.start(glia_binary(), _dir(workdir, "glia-rust"), glia_config(port, [CHAOS]), port)
        stack.callback(rust.stop)
        started["glia-rust"] = rust
    return started


def _embedded_config(workdir: Path, chaos: dict[str, Any]) -> Path:
    """The embedded glia's config file: `chaos` on Synapse's thread (`instances: per_thread`)."""
    path = _dir(workdir, "glia-embedded") / "glia.yaml"
    config = glia_config(free_port(), [{**chaos, "instances": "per_thread"}])
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _dir(workdir: Path, name: str) -> Path:
    path = workdir / name
    path.mkdir()
    return path


def report(readers: list[Reader]) -> None:
    """Median, p90 and mean per setup, and each median's ratio to `none` and `native`."""
    medians = {r.name: statistics.median(r.samples_ms) for r in readers}
    print(f"{'setup':<18}{'n':>5}{'median ms':>11}{'p90 ms':>9}{'mean ms':>9}{'x none':>8}{'x native':>10}")
    for reader in readers:
        samples = reader.samples_ms
        median = medians[reader.name]
        print(
            f"{reader.name:<18}{len(samples):>5}{median:>11.2f}{percentile(samples, 0.9):>9.2f}"
            f"{statistics.mean(samples):>9.2f}{median / medians['none']:>8.2f}{median / medians['native']:>10.2f}"
        )
    per_event = {n: (m - medians["none"]) / MESSAGES for n, m in medians.items() if n != "none"}
    print("added per event served (median): " + ", ".join(f"{n} {ms:.3f} ms" for n, ms in per_event.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100, help="measured reads per setup (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured reads per setup first (default 10)")
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
        readers = [Reader(name, synapse.register("bench")) for name, synapse in running.items()]
        for round_ in range(args.warmup + args.rounds):  # one read per setup per round
            for reader in readers:
                reader.read(record=round_ >= args.warmup)
        report(readers)
        if args.breakdown:
            breakdown(running)


if __name__ == "__main__":
    main()
