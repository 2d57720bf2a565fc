"""What hosting a Python module in glia costs per callback: the same do-nothing Synapse module
(`oracle/scripted_synapse.py:DoNothingSpamChecker`, `check_event_for_spam` answering
`NOT_SPAM`) in-process in Synapse, and in glia's Python host, side by side in one run.

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh):

    GLIA_BIN=target/release/glia tests/e2e/.venv/bin/python tests/e2e/bench_python_host.py --sends 300

1. A message send (`PUT /rooms/{id}/send`, one `check_event_for_spam` call) on five Synapses
   side by side (same version and config, SQLite), interleaved round by round so machine load
   drifts hit all alike, after `--warmup` unmeasured sends:
   - `none`: no modules;
   - `native`: the module in Synapse's own process;
   - `glia-rust`: the bridge and glia with a do-nothing module in glia's own process (the
     `chaos` module answering `NOT_SPAM`): what forwarding costs without Python;
   - `hosted`: the bridge and glia with the module in a Python host glia started (its pipe);
   - `hosted-nats`: the same with the module in a standalone host reached over NATS.
   Printed: median, p90, each median's ratio to `none`'s and `native`'s, and the milliseconds
   it adds over `native`.
2. The callback alone: `POST /_glia/v1/callbacks/check_event_for_spam` with a real event's
   PDU, straight to each glia over a kept-alive connection (no Synapse), interleaved: the
   median round trip to the Rust module, the piped host, the piped host with traces on
   (`hosted-traced`: glia's spans and the host's own span, every trace sampled, exported over
   OTLP/gRPC to `glia-otlp-receiver`) and the NATS host.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import Sender, interleaved_sends, percentile, timed
from differential import oracle_env
from harness import GLIA_TOKEN, Glia, NatsServer, Synapse, bridge_module, free_port, glia_binary, wait_until
from hosting import module_info, python_section, start_standalone_host
from trace_receivers import OtlpReceiver

DO_NOTHING = "scripted_synapse.DoNothingSpamChecker"
#: The glia whose hosted module's calls are traced.
TRACED = "hosted-traced"
#: A message event's PDU as the bridge sends it (room version and metadata beside it).
EVENT = {
    "type": "m.room.message",
    "sender": "@bench:localhost",
    "room_id": "!bench:localhost",
    "content": {"msgtype": "m.text", "body": "benchmark message"},
    "origin_server_ts": 1_764_000_000_000,
    "prev_events": ["$prev"],
    "auth_events": ["$create", "$power", "$member"],
    "depth": 12,
    "hashes": {"sha256": "b5Gq4ZpnQ9O1Sj6Kc8f9SgY2ZBc2GJfI1hF0p4y3Wwk"},
    "signatures": {},
    "unsigned": {},
    "event_id": "$bench",
    "room_version": "10",
    "internal_metadata": {"txn_id": "t1", "token_id": 7, "device_id": "DEV"},
}


def glia_config(port: int, modules: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {"listen": f"127.0.0.1:{port}", "auth_token": GLIA_TOKEN, "modules": modules, **more}


def start_glia(stack: ExitStack, workdir: Path, name: str, config: dict[str, Any], port: int) -> Glia:
    directory = workdir / name
    directory.mkdir()
    glia = Glia.start(glia_binary(), directory, config, port, env=oracle_env())
    stack.callback(glia.stop)
    return glia


@contextmanager
def servers(workdir: Path) -> Iterator[tuple[dict[str, Synapse], dict[str, Glia]]]:
    """The five Synapses, and the four glias (and nats-server, a standalone host and an OTLP
    receiver)."""
    with ExitStack() as stack:
        (workdir / "nats").mkdir()
        nats = NatsServer.start(workdir / "nats")
        stack.callback(nats.stop)
        python = python_section("localhost")
        glias: dict[str, Glia] = {}
        port = free_port()
        chaos = {
            "module": "chaos",
            "name": "noop",
            "config": {"callbacks": {"check_event_for_spam": {"answer": "NOT_SPAM"}}},
        }
        glias["glia-rust"] = start_glia(stack, workdir, "glia-rust", glia_config(port, [chaos]), port)
        port = free_port()
        hosted = {"module": DO_NOTHING, "name": "noop"}
        glias["hosted"] = start_glia(stack, workdir, "hosted", glia_config(port, [hosted], python=python), port)
        # The same with glia's spans and the host's exported to a real OTLP receiver: what the
        # traces cost (straight to glia only: no Synapse of its own).
        receiver = OtlpReceiver.start(workdir)
        stack.callback(receiver.stop)
        port = free_port()
        traces = {"traces": {"exporter": "otlp", "protocol": "grpc", "endpoint": receiver.grpc, "sample_ratio": 1.0}}
        config = glia_config(port, [hosted], python=python, telemetry=traces)
        glias[TRACED] = start_glia(stack, workdir, TRACED, config, port)
        port = free_port()
        config = glia_config(
            port, [{**hosted, "placement": "nats"}], python=python, bus={"type": "nats", "url": nats.url}
        )
        (workdir / "nats-host").mkdir()
        config_path = workdir / "nats-host" / "glia.yaml"
        config_path.write_text(yaml.safe_dump(config))
        host = start_standalone_host(config_path, ["noop"], workdir / "nats-host" / "host.log", oracle_env())
        stack.callback(host.stop)
        glias["hosted-nats"] = start_glia(stack, workdir, "hosted-nats", config, port)
        wait_until(lambda: module_info(glias["hosted-nats"].url, "noop")["state"] == "running", 20, "the NATS host")
        setups: dict[str, tuple[list[dict[str, Any]], dict[str, str] | None]] = {
            "none": ([], None),
            "native": ([{"module": DO_NOTHING, "config": {}}], oracle_env()),
            **{
                name: ([bridge_module(g.url, timeout=10, web_resource_paths=[])], None)
                for name, g in glias.items()
                if name != TRACED
            },
        }
        running = {}
        for name, (modules, env) in setups.items():
            synapse = Synapse.start(workdir / f"synapse-{name}", modules, bridge_log_level="INFO", env=env)
            stack.callback(synapse.stop)
            running[name] = synapse
        yield running, glias


def report_sends(senders: list[Sender]) -> None:
    """Median and p90 per setup, each median's ratio to `none`'s and `native`'s, and the
    milliseconds it adds over `native` (the module in Synapse's own process)."""
    medians = {s.name: statistics.median(s.samples_ms) for s in senders}
    print(f"{'setup':<13}{'n':>5}{'median ms':>11}{'p90 ms':>9}{'x none':>8}{'x native':>10}{'over native':>13}")
    for sender in senders:
        name, median = sender.name, medians[sender.name]
        print(
            f"{name:<13}{len(sender.samples_ms):>5}{median:>11.2f}{percentile(sender.samples_ms, 0.9):>9.2f}"
            f"{median / medians['none']:>8.2f}{median / medians['native']:>10.2f}{median - medians['native']:>+13.2f}"
        )


def callback_round_trips(glias: dict[str, Glia], rounds: int, warmup: int) -> None:
    """`POST /_glia/v1/callbacks/check_event_for_spam` to each glia, interleaved."""
    body = json.dumps({"event": EVENT})
    headers = {"Authorization": f"Bearer {GLIA_TOKEN}", "Content-Type": "application/json"}
    conns = {name: http.client.HTTPConnection(g.url.split("://", 1)[1], timeout=30) for name, g in glias.items()}
    samples: dict[str, list[float]] = {name: [] for name in glias}
    path = "/_glia/v1/callbacks/check_event_for_spam"
    for i in range(warmup + rounds):
        for name, conn in conns.items():
            elapsed = timed(conn, name, "POST", path, body, headers)
            if i >= warmup:
                samples[name].append(elapsed)
    base = statistics.median(samples["glia-rust"])
    print(f"{'glia module':<13}{'n':>5}{'median ms':>11}{'p90 ms':>9}{'x rust':>8}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<13}{len(values):>5}{median:>11.3f}{percentile(values, 0.9):>9.3f}{median / base:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=300, help="measured sends per setup (default 300)")
    parser.add_argument("--calls", type=int, default=2000, help="measured callback round trips per glia (default 2000)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured sends and calls first (default 20)")
    args = parser.parse_args()
    print(f"glia binary: {glia_binary()}")
    with tempfile.TemporaryDirectory(prefix="glia-bench-") as tmp, servers(Path(tmp)) as (running, glias):
        print(f"\n== message send, {args.sends} per setup, interleaved")
        report_sends(interleaved_sends(running, args.sends, args.warmup))
        print(f"\n== check_event_for_spam straight to glia, {args.calls} per module, interleaved")
        callback_round_trips(glias, args.calls, args.warmup)


if __name__ == "__main__":
    main()
