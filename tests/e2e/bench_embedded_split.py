"""Where the embedded placement's time goes on one `add_field_to_unsigned`: the per-call cost
split between Python (the bridge's encoding of Synapse's event, with a shallow copy of its
PDU), the runtime's call (Python objects read into the request, the coordinator, the module,
the reply back as Python objects), the answer (the bridge's reply reading), and a call of the
runtime for a callback no module serves (the floor of crossing into Rust and back), against a
native do-nothing Python callback. In one Python process, no Synapse serving (`bench_unsigned.py` measures through a
real Synapse).

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh and
`GLIA_EMBEDDED_PROFILE=release tests/e2e/embedded.sh`):

    tests/e2e/.venv/bin/python tests/e2e/bench_embedded_split.py --rounds 30 --calls 2000

The event is a real Synapse `FrozenEvent` of an `m.room.message`, as /messages serves it.
Each round times `--calls` calls of every stage, the stages interleaved round by round; the
report gives each stage's median microseconds per call over the rounds, and its ratio to the
native callback.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from glia_embedded import _native
from glia_embedded.module import EMBEDDED_ENCODERS
from synapse.api.room_versions import RoomVersions
from synapse.events import make_event_from_dict

from glia_synapse.catalogue import BY_NAME
from glia_synapse.convert import encode_args
from glia_synapse.replies import check_error

SPEC = BY_NAME["add_field_to_unsigned"]
CHAOS = {
    "module": "chaos",
    "name": "noop",
    "instances": "per_thread",
    "config": {"callbacks": {"add_field_to_unsigned": {"answer": {}}}},
}


def message_event() -> Any:
    """A stored `m.room.message` as Synapse holds it."""
    pdu = {
        "type": "m.room.message",
        "room_id": "!bench:localhost",
        "sender": "@bench:localhost",
        "content": {"msgtype": "m.text", "body": "message 17"},
        "origin_server_ts": 1765000000000,
        "depth": 42,
        "prev_events": ["$prev_event_id_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
        "auth_events": [f"$auth_event_{i}_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" for i in range(3)],
        "hashes": {"sha256": "a" * 43},
        "signatures": {"localhost": {"ed25519:a_abcd": "s" * 86}},
        "unsigned": {"age_ts": 1765000000000},
    }
    return make_event_from_dict(pdu, RoomVersions.V10, {"stream_ordering": 17})


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Runs a coroutine that does not wait, as Synapse's `await` of a callback that answered."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the callback waited")


def stages(runtime: Any, event: Any) -> dict[str, Callable[[], Any]]:
    """Each stage, as a call of its own; `forward` is the whole embedded path."""
    args = {"event": event}
    body = encode_args(SPEC.params, args, (), EMBEDDED_ENCODERS)
    reply = runtime.call(SPEC.name, body)
    assert isinstance(reply, dict), reply
    unserved = {"user_id": "@bench:localhost"}

    async def native(event: Any) -> dict[str, Any]:
        return {}

    async def forward(event: Any) -> Any:
        args = {"event": event}
        answered = runtime.call(SPEC.name, encode_args(SPEC.params, args, (), EMBEDDED_ENCODERS))
        return SPEC.reply.decode(check_error(answered), args)

    return {
        "native": lambda: run(native(event)),
        "encode (Python)": lambda: encode_args(SPEC.params, args, (), EMBEDDED_ENCODERS),
        "call (Rust)": lambda: runtime.call(SPEC.name, body),
        "call, no module": lambda: runtime.call("is_user_expired", unserved),
        "answer (Python)": lambda: SPEC.reply.decode(check_error(reply), args),
        "forward (all)": lambda: run(forward(event)),
    }


def measure(named: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, list[float]]:
    """Microseconds per call of each stage, one sample per round, interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(rounds):
        for name, stage in named.items():
            started = time.perf_counter()
            for _ in range(calls):
                stage()
            samples[name].append((time.perf_counter() - started) / calls * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glia-split-") as tmp:
        config = Path(tmp) / "glia.yaml"
        config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "modules": [CHAOS]}))
        runtime = _native.Runtime(str(config), False, lambda *_: None)
        try:
            named = stages(runtime, message_event())
            measure(named, 2, args.calls)  # warm-up
            samples = measure(named, args.rounds, args.calls)
        finally:
            runtime.stop()
    native = statistics.median(samples["native"])
    print(f"{'stage':<18}{'median us':>11}{'p90 us':>9}{'x native':>10}")
    for name, values in samples.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(f"{name:<18}{median:>11.2f}{p90:>9.2f}{median / native:>10.2f}")


if __name__ == "__main__":
    main()
