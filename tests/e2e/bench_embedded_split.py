"""Where the embedded placement's time goes on one `add_field_to_unsigned` (a do-nothing `chaos`
module answering) or, with `--callback check_event_for_spam`, one `check_event_for_spam` (the
e2e seed modules answering, those `bench_send.py` embeds): the per-call cost split between
Python (the bridge's encoding of Synapse's event), the runtime's call (Python objects read
into the request, the coordinator, the modules, the reply back as Python objects), the answer
(the bridge's reply reading), and a call of the runtime for a callback no module serves (the
floor of crossing into Rust and back, on a second runtime with only the `chaos` module),
against a native do-nothing Python callback. In one Python process, no Synapse serving
(`bench_unsigned.py` measures through a real Synapse).

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh and
`GLIA_EMBEDDED_PROFILE=release tests/e2e/embedded.sh`):

    tests/e2e/.venv/bin/python tests/e2e/bench_embedded_split.py --rounds 30 --calls 2000
    tests/e2e/.venv/bin/python tests/e2e/bench_embedded_split.py --callback check_event_for_spam

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

from glia_synapse.catalogue import BY_NAME, CallbackSpec
from glia_synapse.convert import encode_args
from glia_synapse.replies import check_error
from glia_synapse.tracing import trace_headers
from harness import glia_config

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


#: What a native do-nothing callback returns, per callback measured.
NATIVE_ANSWERS: dict[str, Any] = {"add_field_to_unsigned": {}, "check_event_for_spam": "NOT_SPAM"}


def modules_for(callback: str) -> list[dict[str, Any]]:
    """The modules answering `callback`: the `chaos` do-nothing one, or the e2e seed modules."""
    if callback == "add_field_to_unsigned":
        return [CHAOS]
    return glia_config(0, "", censor=False)["modules"]


def stages(spec: CallbackSpec, runtime: Any, floor: Any, event: Any) -> dict[str, Callable[[], Any]]:
    """Each stage, as a call of its own; `forward` is the whole embedded path."""
    args = {"event": event}
    body = encode_args(spec.params, args, (), EMBEDDED_ENCODERS)
    reply = runtime.call(spec.name, body)
    assert not isinstance(reply, int), f"{spec.name} waited: its modules do not answer on this thread"
    unserved = {"user_id": "@bench:localhost"}
    answer = NATIVE_ANSWERS[spec.name]

    async def native(event: Any) -> Any:
        return answer

    async def forward(event: Any) -> Any:
        args = {"event": event}
        trace = trace_headers()
        body = encode_args(spec.params, args, (), EMBEDDED_ENCODERS)
        answered = runtime.call(spec.name, body, trace.get("traceparent"), trace.get("tracestate"))
        return spec.reply.decode(check_error(answered), args)

    return {
        "native": lambda: run(native(event)),
        "encode (Python)": lambda: encode_args(spec.params, args, (), EMBEDDED_ENCODERS),
        "call (Rust)": lambda: runtime.call(spec.name, body),
        "call, no module": lambda: floor.call("is_user_expired", unserved),
        "answer (Python)": lambda: spec.reply.decode(check_error(reply), args),
        "forward (all)": lambda: run(forward(event)),
    }


def start(directory: Path, name: str, modules: list[dict[str, Any]]) -> Any:
    """An embedded runtime with `modules`, its config written in `directory`."""
    config = directory / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "modules": modules}))
    return _native.Runtime(str(config), False, lambda *_: None)


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
    parser.add_argument("--callback", choices=sorted(NATIVE_ANSWERS), default="add_field_to_unsigned")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glia-split-") as tmp:
        runtime = start(Path(tmp), "measured", modules_for(args.callback))
        floor = start(Path(tmp), "floor", [CHAOS])
        try:
            named = stages(BY_NAME[args.callback], runtime, floor, message_event())
            measure(named, 2, args.calls)  # warm-up
            samples = measure(named, args.rounds, args.calls)
        finally:
            runtime.stop()
            floor.stop()
    native = statistics.median(samples["native"])
    print(f"{'stage':<18}{'median us':>11}{'p90 us':>9}{'x native':>10}")
    for name, values in samples.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(f"{name:<18}{median:>11.2f}{p90:>9.2f}{median / native:>10.2f}")


if __name__ == "__main__":
    main()
