"""What a forwarded callback costs Synapse, per transport, and what the bridge adds to a send,
against synapse-http-antispam posting to a do-nothing server, measured in one run.

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh and
`cargo build --release -p glia-runtime --bin glia -p glia-tests --bin glia-antispam-fake`):

    GLIA_BIN=target/release/glia tests/e2e/.venv/bin/python tests/e2e/bench_transport.py

(a) **A forwarded callback, inside Synapse.** Each Synapse loads `oracle/callback_timer.py`,
which runs Synapse's own `check_event_for_spam` dispatch in a loop in Synapse's reactor and
times each call (no client HTTP in the clock). Setups, one Synapse each:

- `antispam`: synapse-http-antispam to `glia-antispam-fake nothing` (the peer baseline);
- `bridge-synapse-http`: the bridge with `transport: synapse` (Synapse's `SimpleHttpClient`,
  the bridge's transport before its own) to glia over TCP;
- `bridge-lean-tcp`: the bridge's own transport to the same glia over TCP;
- `bridge-lean-unix`: the same over glia's Unix socket (`listen_unix`).

glia runs `list_spam_checker` in process. `--rounds` rounds of `--batch` calls per setup,
interleaved round by round, after one unmeasured round. `--against DIR` (repeatable; DIR is
another checkout's `deploy/synapse-bridge`) adds `bridge-lean-tcp@N` and `bridge-lean-unix@N`:
the same setups with that bridge first on Synapse's `PYTHONPATH`, to the same glia, so a
change to the bridge is measured against the bridge before it in the same rounds.

(b) **A message send.** `PUT /rooms/{id}/send` over a kept-alive connection, interleaved:
`none` (no modules), `antispam` (as above), `bridge-lean-unix` (as above: 1 callback per
send), `seed-lean-unix` (the bridge, glia with the e2e seed modules but the censor: 2
callbacks per send), and `seed-synapse-http` (the same glia
through Synapse's HTTP client), in a new random order each round. Prints medians and what
each adds over `none`; with `--breakdown` the bridge logs at DEBUG (which costs a little) and
the median of its own timing of each forwarded callback, within the sends, is printed too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from antispam import AntispamFake, antispam_module, fake_binary
from bench_send import Sender, breakdown, percentile, report
from differential import oracle_env
from harness import GLIA_TOKEN, Glia, Synapse, bridge_module, free_port, glia_binary, glia_config, mxid
from hosting import ORACLE, python_path_env

TIMER = {"module": "callback_timer.CallbackTimer", "config": {}}
TIMER_PATH = "/_synapse/client/bench/check_event_for_spam"
SPAM_ONLY = ["check_event_for_spam"]


def start_glia(workdir: Path, name: str, config: dict[str, Any]) -> Glia:
    port = free_port()
    glia_dir = workdir / name
    glia_dir.mkdir()
    socket = glia_dir / "glia.sock"
    return Glia.start(
        glia_binary(), glia_dir, {**config, "listen": f"127.0.0.1:{port}", "listen_unix": str(socket)}, port
    )


@contextmanager
def servers(
    workdir: Path, bridge_log_level: str = "INFO", against: Sequence[Path] = ()
) -> Iterator[tuple[dict[str, Synapse], dict[str, Synapse]]]:
    """The Synapses of (a) and of (b), and what runs behind them; `against`: other bridges'
    directories, each measured in (a) over TCP and the Unix socket too."""
    with ExitStack() as stack:
        nothing = AntispamFake.start(workdir, "nothing", "nothing")
        stack.callback(nothing.stop)
        checker = {"module": "list_spam_checker", "config": {"evil_users": [mxid("nobody")]}}
        one = start_glia(workdir, "glia-one", {"auth_token": GLIA_TOKEN, "modules": [checker]})
        stack.callback(one.stop)
        seed_config = glia_config(0, "http://127.0.0.1:9", censor=False)
        seed = start_glia(workdir, "glia-seed", {k: v for k, v in seed_config.items() if k != "listen"})
        stack.callback(seed.stop)
        one_socket = f"unix:{one.config_path.parent / 'glia.sock'}"
        seed_socket = f"unix:{seed.config_path.parent / 'glia.sock'}"
        callback_setups: dict[str, list[dict[str, Any]]] = {
            "antispam": [antispam_module(nothing.base_url, enabled_callbacks=SPAM_ONLY)],
            "bridge-synapse-http": [bridge_module(one.url, transport="synapse", callbacks=SPAM_ONLY, timeout=10)],
            "bridge-lean-tcp": [bridge_module(one.url, callbacks=SPAM_ONLY, timeout=10)],
            "bridge-lean-unix": [bridge_module(one_socket, callbacks=SPAM_ONLY, timeout=10)],
        }
        send_setups: dict[str, list[dict[str, Any]]] = {
            "none": [],
            "seed-lean-unix": [bridge_module(seed_socket, timeout=10)],
            "seed-synapse-http": [bridge_module(seed.url, transport="synapse", timeout=10)],
        }
        envs: dict[str, dict[str, str]] = {}
        for i, bridge in enumerate(against, 1):
            for name in ("bridge-lean-tcp", "bridge-lean-unix"):
                callback_setups[f"{name}@{i}"] = callback_setups[name]
                envs[f"{name}@{i}"] = python_path_env(bridge, ORACLE)
        running: dict[str, Synapse] = {}
        for name, modules in {**callback_setups, **send_setups}.items():
            synapse = Synapse.start(
                workdir / f"synapse-{name}",
                [TIMER, *modules],
                bridge_log_level=bridge_log_level,
                env=envs.get(name) or oracle_env(),
            )
            stack.callback(synapse.stop)
            running[name] = synapse
        by_callback = {name: running[name] for name in callback_setups}
        names = ("none", "antispam", "bridge-lean-unix", "seed-lean-unix", "seed-synapse-http")
        sends = {name: running[name] for name in names}
        yield by_callback, sends


def timed_callbacks(running: dict[str, Synapse], rounds: int, batch: int) -> dict[str, list[float]]:
    """Milliseconds per `check_event_for_spam` dispatch inside each Synapse, interleaved."""
    connections = {
        name: http.client.HTTPConnection(s.url.split("://", 1)[1], timeout=60) for name, s in running.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in running}
    for round_ in range(rounds + 1):
        for name, conn in connections.items():
            conn.request("GET", f"{TIMER_PATH}?n={batch}")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{name}: {response.status} {body[:300]!r}")
            if round_ > 0:  # the first round warms up
                samples[name].extend(json.loads(body))
    return samples


def shuffled_sends(running: dict[str, Synapse], sends: int, warmup: int) -> list[Sender]:
    """A user per Synapse sending `sends` timed messages (after `warmup` untimed ones), round
    by round in a new random order each round, so neither machine load drifts nor the order
    within a round (a send overlapping the previous Synapse's after-send work) favour one."""
    senders = [Sender(name, synapse.register(f"bench_{name.replace('-', '_')}")) for name, synapse in running.items()]
    for sender in senders:
        for _ in range(warmup):
            sender.send(record=False)
    rounds = random.Random(14)
    for _ in range(sends):
        for sender in rounds.sample(senders, len(senders)):
            sender.send()
    return senders


def report_callbacks(samples: dict[str, list[float]]) -> None:
    print(f"{'a callback inside Synapse':<26}{'n':>6}{'median ms':>11}{'p90 ms':>9}{'vs antispam':>13}")
    base = statistics.median(samples["antispam"])
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<26}{len(values):>6}{median:>11.3f}{percentile(values, 0.9):>9.3f}{median / base:>12.2f}x")
    old, new = statistics.median(samples["bridge-synapse-http"]), statistics.median(samples["bridge-lean-unix"])
    tcp = statistics.median(samples["bridge-lean-tcp"])
    print(
        f"bridge, Synapse's HTTP client / own transport: TCP {old / tcp:.2f}x, Unix socket {old / new:.2f}x; "
        f"antispam / own transport (Unix socket): {base / new:.2f}x"
    )
    for name in samples:
        setup, _, against = name.partition("@")
        if against:
            ratio = statistics.median(samples[setup]) / statistics.median(samples[name])
            print(f"{setup}: this checkout / --against #{against}: {ratio:.3f}x the time per callback")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds of (a) (default 20)")
    parser.add_argument("--batch", type=int, default=50, help="calls per setup per round in (a) (default 50)")
    parser.add_argument("--sends", type=int, default=200, help="measured sends per setup in (b) (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured sends per setup first (default 20)")
    parser.add_argument("--breakdown", action="store_true", help="the bridge logs at DEBUG: time each forwarded call")
    parser.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        help="another checkout's deploy/synapse-bridge, measured in (a) beside this one (repeatable)",
    )
    args = parser.parse_args()
    print(f"glia binary: {glia_binary()}; do-nothing server: {fake_binary()}")
    for i, bridge in enumerate(args.against, 1):
        if not (bridge / "glia_synapse" / "__init__.py").is_file():
            parser.error(f"--against {bridge}: no glia_synapse package there")
        print(f"--against #{i}: {bridge.resolve()}")
    level = "DEBUG" if args.breakdown else "INFO"
    with (
        tempfile.TemporaryDirectory(prefix="glia-bench-transport-") as tmp,
        servers(Path(tmp), level, [b.resolve() for b in args.against]) as (by_cb, sends),
    ):
        report_callbacks(timed_callbacks(by_cb, args.rounds, args.batch))
        print()
        senders = shuffled_sends(sends, args.sends, args.warmup)
        report(senders)
        if args.breakdown:
            breakdown(sends)


if __name__ == "__main__":
    main()
