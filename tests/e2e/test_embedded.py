"""End to end: glia embedded in a real Synapse's process (`glia_embedded.GliaEmbedded`, the
wheel built by tests/e2e/embedded.sh), with the seed modules of the bridge's tests, and a few
`chaos` modules: one tagging every event served (`add_field_to_unsigned`), one that panics on
every `user_may_create_room_alias`, one that never answers `user_may_invite`. Synapse's own
metrics listener is on, and serves glia's metrics through Synapse's Prometheus registry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import World, _synapse_log_tail
from harness import (
    CensorService,
    Reply,
    Synapse,
    embedded_module,
    free_port,
    glia_config,
    http_request,
    mxid,
    synapse_config,
    wait_until,
)

TAG = {"org.glia.embedded": "tagged"}
#: The never-answering module's timeout, and its failure policy's answer: deny.
HANG_TIMEOUT = "1500ms"

CHAOS = [
    {
        "module": "chaos",
        "name": "tagger",
        "instances": "per_thread",
        "config": {"callbacks": {"add_field_to_unsigned": {"answer": TAG}}},
    },
    {
        "module": "chaos",
        "name": "panicker",
        "instances": "per_thread",
        "failure_policy": {"user_may_create_room_alias": "allow"},
        "config": {"callbacks": {"user_may_create_room_alias": {"answer": "NOT_SPAM", "panic": 1.0}}},
    },
    {
        "module": "chaos",
        "name": "hanger",
        "timeout": HANG_TIMEOUT,
        "failure_policy": {"user_may_invite": "deny"},
        "config": {"callbacks": {"user_may_invite": {"answer": "NOT_SPAM", "hang": 1.0}}},
    },
]


@dataclass
class Embedded:
    """Synapse with glia embedded, the port of glia's HTTP API, and Synapse's metrics listener."""

    synapse: Synapse
    glia_port: int
    synapse_metrics_port: int
    #: The embedded glia's decision log (`telemetry.decision_log`, a file).
    decisions: Path


def with_metrics_listener(workdir: Path, client_port: int, metrics_port: int) -> dict[str, Any]:
    """Synapse's config overrides that add its metrics listener (Prometheus, on
    `metrics_port`) to the client listener `synapse_config` makes on `client_port`."""
    listeners = synapse_config(workdir, client_port, [])["listeners"]
    listeners.append({"port": metrics_port, "bind_addresses": ["127.0.0.1"], "type": "metrics"})
    return {"enable_metrics": True, "listeners": listeners}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, censor: CensorService) -> Iterator[Embedded]:
    """Synapse with glia embedded, serving glia's HTTP API too (for `/metrics`), and Synapse's
    metrics listener."""
    try:
        import glia_embedded  # noqa: F401
    except ImportError as e:
        pytest.fail(f"{e}: build and install the wheel with tests/e2e/embedded.sh (run.sh does)", pytrace=False)
    workdir = tmp_path_factory.mktemp("embedded")
    port = free_port()
    config = glia_config(port, censor.url)
    config["modules"] += CHAOS
    decisions = workdir / "decisions.jsonl"
    config["telemetry"] = {"metrics": {"enabled": True}, "decision_log": {"output": "file", "path": str(decisions)}}
    glia_file = workdir / "glia.yaml"
    glia_file.write_text(yaml.safe_dump(config, sort_keys=False))
    client_port, metrics_port = free_port(), free_port()
    overrides = with_metrics_listener(workdir / "synapse", client_port, metrics_port)
    synapse = Synapse.start(
        workdir / "synapse", [embedded_module(glia_file, http=True)], port=client_port, overrides=overrides
    )
    yield Embedded(synapse, port, metrics_port, decisions)
    synapse.stop()


@pytest.fixture(scope="module")
def eworld(embedded: Embedded, censor: CensorService) -> World:
    """Users on the embedding Synapse and alice's public room, which bob and spammer joined."""
    synapse = embedded.synapse
    users = {name: synapse.register(name) for name in ("alice", "bob", "evilguy", "spammer")}
    created = users["alice"].create_room(preset="public_chat", name="embedded")
    assert created.status == 200, created
    for name in ("bob", "spammer"):
        joined = users[name].join(created.body["room_id"])
        assert joined.status == 200, joined
    return World(None, synapse, censor, users, created.body["room_id"])  # type: ignore[arg-type]


def expect(world: World, reply: Reply, status: int, errcode: str | None = None) -> Reply:
    """`World.expect` without a glia process: Synapse's output shows glia's."""
    if reply.status != status or (errcode is not None and reply.errcode != errcode):
        pytest.fail(
            f"expected {status} {errcode or ''}, got {reply.status} {reply.body}\n"
            f"{world.synapse.process.tail()}\n{_synapse_log_tail(world.synapse)}"
        )
    return reply


def test_the_seed_modules_deny_and_allow_as_through_the_bridge(eworld: World) -> None:
    refused = expect(eworld, eworld.evilguy.create_room(), 403, "M_FORBIDDEN")
    assert refused.body["error"] == "You are not permitted to create rooms"
    expect(eworld, eworld.spammer.send_text(eworld.room_id, "totally legit offer"), 403, "M_FORBIDDEN")
    refused = expect(eworld, eworld.alice.send_text(eworld.room_id, "buy followers cheap"), 403, "ORG_GLIA_BLOCKED")
    assert refused.body["org.glia.reason"] == "blocked_keyword"
    expect(eworld, eworld.alice.send_text(eworld.room_id, "hello"), 200)


def test_the_decision_log_records_what_the_client_was_told(eworld: World, embedded: Embedded) -> None:
    """The embedded glia writes its decision log as `glia serve` does: a send the keyword
    filter refuses is one `check_event_for_spam` record with the errcode the client got."""
    refused = expect(eworld, eworld.alice.send_text(eworld.room_id, "cheap followers, buy followers"), 403)

    def blocked() -> list[dict[str, Any]]:
        lines = embedded.decisions.read_text().splitlines() if embedded.decisions.exists() else []
        records = [json.loads(line) for line in lines if line.strip()]
        return [
            r
            for r in records
            if r["callback"] == "check_event_for_spam" and r["result"].get("errcode") == refused.errcode
        ]

    wait_until(lambda: bool(blocked()), 10, "the decision record of the refused send")
    record = blocked()[-1]
    assert record["result"]["decision"] == "deny", record
    assert record["result"]["errcode"] == "ORG_GLIA_BLOCKED", record


def test_an_http_module_answers_through_the_deferred_path(eworld: World) -> None:
    """event_censorer waits for its HTTP endpoint: the dispatch finishes on glia's thread."""
    sent = expect(eworld, eworld.alice.send_text(eworld.room_id, "darn this bug"), 200)
    stored = expect(eworld, eworld.alice.event(eworld.room_id, sent.body["event_id"]), 200)
    assert stored.body["content"] == {"msgtype": "m.text", "body": "**** this bug"}


def test_fields_from_an_embedded_module_show_in_messages(eworld: World) -> None:
    expect(eworld, eworld.alice.send_text(eworld.room_id, "tag me"), 200)
    chunk = expect(eworld, eworld.alice.messages(eworld.room_id), 200).body["chunk"]
    assert chunk and all(e["unsigned"].get("org.glia.embedded") == "tagged" for e in chunk), chunk


def test_a_panicking_module_fails_through_its_policy_and_synapse_goes_on(eworld: World) -> None:
    for n in range(3):  # each call panics; the policy allows; the module is rebuilt between
        alias = quote(f"#embedded-{n}:localhost")
        put = eworld.alice.request("PUT", f"/_matrix/client/v3/directory/room/{alias}", {"room_id": eworld.room_id})
        expect(eworld, put, 200)
    expect(eworld, eworld.alice.whoami(), 200)
    assert "PanicException" not in eworld.synapse.log()


def test_a_module_that_never_answers_times_out_without_blocking_synapse(eworld: World) -> None:
    invited: list[Reply] = []
    inviter = threading.Thread(target=lambda: invited.append(eworld.alice.invite(eworld.room_id, mxid("evilguy"))))
    inviter.start()
    # While alice's invite waits for the hanging module, Synapse serves others.
    served_meanwhile = [eworld.bob.whoami().status for _ in range(5)]
    still_waiting = inviter.is_alive()
    inviter.join(30)
    assert served_meanwhile == [200] * 5
    assert still_waiting, "the invite was answered before the module's timeout; the test proves nothing"
    expect(eworld, invited[0], 403, "M_FORBIDDEN")  # the hanging module's policy: deny


def test_glias_metrics_count_the_embedded_decisions(eworld: World, embedded: Embedded) -> None:
    status, _, body = http_request("GET", f"http://127.0.0.1:{embedded.glia_port}/metrics")
    assert status == 200
    text = body.decode()
    assert 'callback="check_event_for_spam"' in text, text[:2000]
    assert 'callback="add_field_to_unsigned"' in text


def decisions_in_synapses_metrics(embedded: Embedded, callback: str) -> float:
    """glia's `glia_decisions_total` for `callback` (all results), as Synapse's own metrics
    listener serves it; fails when the family is not there."""
    status, _, body = http_request("GET", f"http://127.0.0.1:{embedded.synapse_metrics_port}/_synapse/metrics")
    assert status == 200, body[:500]
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert "glia_decisions" in families, sorted(families)
    return sum(
        s.value
        for s in families["glia_decisions"].samples
        if s.name == "glia_decisions_total" and s.labels.get("callback") == callback
    )


def test_synapses_metrics_listener_serves_glias_metrics(eworld: World, embedded: Embedded) -> None:
    """glia's series come out of Synapse's own registry (no glia listener involved) and are
    read at each scrape: a message send adds to the spam check's decisions."""
    before = decisions_in_synapses_metrics(embedded, "check_event_for_spam")
    expect(eworld, eworld.alice.send_text(eworld.room_id, "counted"), 200)
    after = decisions_in_synapses_metrics(embedded, "check_event_for_spam")
    assert after >= before + 1, (before, after)
