"""The embedded placement's two ways of reading a callback's arguments into glia's typed
request (embed/src/pyde.rs straight from Python objects; embed/src/pyjson.rs through JSON
values, which names the bad field of bad arguments) agree: wherever the direct path takes the
arguments, it reads the request the JSON path reads, and it takes every well-formed request of
the fuzz corpus and Synapse's own events. No Synapse runs; the wheel of tests/e2e/embedded.sh
must be installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

try:
    from glia_embedded import _native
    from glia_embedded.module import EMBEDDED_ENCODERS
except ImportError as e:  # pragma: no cover - the failure says how to get it
    pytest.fail(f"{e}: build and install the wheel with tests/e2e/embedded.sh (run.sh does)", pytrace=False)

from synapse.api.room_versions import RoomVersions
from synapse.events import make_event_from_dict
from synapse.util.frozenutils import freeze

from glia_synapse.catalogue import BY_NAME
from glia_synapse.convert import encode_args

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus" / "callback_args"


def paths(name: str, args: Any) -> tuple[str | None, str]:
    """Both readings; the direct one, when it takes the arguments, must be the JSON one's."""
    direct, via_json = _native.decode_paths(name, args)
    if direct is not None:
        assert direct == via_json, f"{name}: the two paths read {args!r} differently"
    return direct, via_json


def corpus() -> list[tuple[str, Any]]:
    """The corpus's requests whose file names their callback, as Python objects."""
    found = []
    for path in sorted(CORPUS.glob("*.json")):
        body = path.read_bytes()[1:]
        found.append((path.stem, json.loads(body)))
    assert len(found) >= 40, f"the corpus at {CORPUS} has {len(found)} requests"
    return found


@pytest.mark.parametrize(("name", "args"), corpus(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_direct_path_reads_the_corpus_as_json_does(name: str, args: Any) -> None:
    direct, via_json = paths(name, args)
    if not via_json.startswith("error:"):
        assert direct is not None, f"{name}: the direct path refused a request the JSON path reads"


def synapse_event(**extra: Any) -> Any:
    """A stored `m.room.message`, as Synapse holds it (immutable mappings, tuples)."""
    pdu = {
        "type": "m.room.message",
        "room_id": "!r:localhost",
        "sender": "@alice:localhost",
        "content": {"msgtype": "m.text", "body": "hello", "nested": {"list": [1, -2, 2.5, None, True]}},
        "origin_server_ts": 1765000000000,
        "depth": 42,
        "prev_events": ["$prev"],
        "auth_events": ["$a", "$b"],
        "hashes": {"sha256": "a" * 43},
        "signatures": {"localhost": {"ed25519:a": "s" * 86}},
        "unsigned": {"age_ts": 1765000000000},
        **extra,
    }
    return make_event_from_dict(pdu, RoomVersions.V10, {"stream_ordering": 17, "txn_id": "t1"})


@pytest.mark.parametrize("name", ["check_event_for_spam", "add_field_to_unsigned", "check_event_allowed"])
def test_the_direct_path_reads_synapses_events(name: str) -> None:
    spec = BY_NAME[name]
    args = {param: synapse_event() if param == "event" else None for param in spec.params}
    body = encode_args(spec.params, args, spec.skip, EMBEDDED_ENCODERS)
    direct, _ = paths(name, body)
    assert direct is not None, f"{name}: the direct path refused Synapse's event"
    assert "message" in direct


def event_body(**fields: Any) -> dict[str, Any]:
    event = {"type": "m.room.message", "sender": "@a:b", "content": {"body": "x"}, **fields}
    return {"event": event}


class Odd:
    """Neither JSON nor an iterable."""


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


ODD_ARGUMENTS = [
    event_body(depth=float("nan")),
    event_body(depth=float("inf"), content={}),
    event_body(big=2**70),
    event_body(big=2**64 - 1, small=-(2**63)),
    event_body(content={"big": -(2**64)}),
    event_body(content={1: "int key", "1": "str key"}),
    event_body(content={("a", 1): "tuple key"}),
    event_body(content={"b": b"bytes \xff"}),
    event_body(content=freeze({"frozen": {"a": [1, 2]}}), prev_events=("$a", "$b")),
    event_body(content={"s": "\ud800"}),
    event_body(content={"g": (x for x in range(3))}),
    event_body(content={"set": frozenset([1])}),
    event_body(content={"odd": Odd()}),
    event_body(x=nested(120)),
    event_body(x=nested(127)),
    event_body(x=nested(128)),
    event_body(x=nested(200)),
    event_body(sender=5),
    event_body(sender=None),
    event_body(origin_server_ts=1.5),
    event_body(origin_server_ts=True),
    event_body(content=None),
    event_body(content=[]),
    event_body(unsigned=None, state_key=""),
    {"event": {"type": "t"}},
    {"event": ["@a:b", "t"]},
    {"event": "an event"},
    {},
    [],
    None,
]


@pytest.mark.parametrize("args", ODD_ARGUMENTS, ids=[str(i) for i in range(len(ODD_ARGUMENTS))])
def test_the_direct_path_reads_odd_arguments_as_json_does_or_leaves_them(args: Any) -> None:
    paths("check_event_for_spam", args)


def test_unknown_callbacks_and_other_requests_read_alike() -> None:
    assert paths("no_such_callback", {})[0] is None
    direct, via_json = paths("user_may_join_room", {"user_id": "@a:b", "room_id": "!r:b", "is_invited": True})
    assert direct is not None and not via_json.startswith("error:")
    paths("user_may_join_room", {"user_id": "@a:b", "room_id": "!r:b", "is_invited": 1})
    paths("get_users_for_states", {"states": [{"user_id": "@a:b", "state": "online"}]})
    paths("get_users_for_states", {"states": [{"user_id": "@a:b", "state": "elsewhere"}]})
