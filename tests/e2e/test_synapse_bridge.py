"""End to end: a real Synapse, the glia bridge in its `modules:`, glia with the seed modules,
and clients speaking the client-server API.

The tests share one Synapse and one glia; the two tests that take glia away put it back.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conftest import World
from glia_synapse.reply_cache import FRESH_S
from harness import BRIDGE_TIMEOUT_S, http_request, mxid


def test_demo_module_refuses_room_creation_to_the_listed_user(world: World) -> None:
    refused = world.expect(world.evilguy.create_room(), 403, "M_FORBIDDEN")
    assert refused.body["error"] == "You are not permitted to create rooms"
    world.expect(world.bob.create_room(), 200)


def test_list_spam_checker_refuses_the_listed_users_messages(world: World) -> None:
    world.expect(world.spammer.send_text(world.room_id, "totally legit offer"), 403, "M_FORBIDDEN")
    world.expect(world.alice.send_text(world.room_id, "hello from alice"), 200)
    world.expect(world.bob.send_text(world.room_id, "hello from bob"), 200)

    messages = world.bob.message_bodies(world.room_id)
    assert (mxid("alice"), "hello from alice") in messages
    assert (mxid("bob"), "hello from bob") in messages
    assert not [m for m in messages if m[0] == mxid("spammer")]


def test_a_module_errcode_outside_synapses_codes_and_its_fields_reach_the_client(world: World) -> None:
    refused = world.expect(world.alice.send_text(world.room_id, "buy followers cheap"), 403, "ORG_GLIA_BLOCKED")
    assert refused.body["org.glia.reason"] == "blocked_keyword"


def test_event_censorer_replaces_the_content_with_the_censors_answer(world: World) -> None:
    sent = world.expect(world.alice.send_text(world.room_id, "darn this bug"), 200)
    stored = world.expect(world.bob.event(world.room_id, sent.body["event_id"]), 200)
    assert stored.body["content"] == {"msgtype": "m.text", "body": "**** this bug"}
    assert (mxid("alice"), "**** this bug") in world.bob.message_bodies(world.room_id)
    assert any(e.get("content", {}).get("body") == "darn this bug" for e in world.censor.seen)


def test_an_expired_account_is_refused_on_authenticated_requests(world: World) -> None:
    for reply in (world.expired.whoami(), world.expired.request("GET", "/_matrix/client/v3/joined_rooms")):
        world.expect(reply, 403, "ORG_MATRIX_EXPIRED_ACCOUNT")
    world.expect(world.alice.whoami(), 200)


def test_user_restrictions_deny_the_listed_users_invites(world: World) -> None:
    room = world.expect(world.mallory.create_room(), 200).body["room_id"]
    refused = world.expect(world.mallory.invite(room, mxid("bob")), 403, "M_FORBIDDEN")
    assert refused.body["error"] == "Invites have been disabled on this server"
    room = world.expect(world.alice.create_room(), 200).body["room_id"]
    world.expect(world.alice.invite(room, mxid("bob")), 200)


def test_module_web_resources_answer_on_synapses_port(world: World) -> None:
    def get(path: str) -> tuple[int, str, Any]:
        status, headers, body = http_request("GET", world.synapse.url + path)
        return status, headers.get("content-type", ""), json.loads(body)

    assert get("/_synapse/client/demo/hello?name=x") == (200, "application/json", {"hello": "x"})
    assert get(f"/_synapse/client/list_spam_checker/is_evil?user={mxid('spammer')}") == (
        200,
        "application/json",
        {"user": mxid("spammer"), "is_evil": True},
    )
    status, _, body = get("/_synapse/client/account_expiry/registered")
    assert status == 200 and mxid("alice") in body["users"]  # on_user_registration reached glia
    status, _, body = get("/_synapse/client/demo/hello")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")  # the module's own error, proxied
    status, _, _ = http_request("POST", world.synapse.url + "/_synapse/client/demo/hello?name=x", b"{}")
    assert status == 405  # the method is proxied too


def test_an_unresponsive_glia_times_out_into_each_callbacks_failure_mode(world: World) -> None:
    with glia_frozen(world):
        started = time.monotonic()
        # is_user_expired, check_event_allowed and check_event_for_spam fail open:
        sent = world.expect(world.alice.send_text(world.room_id, "darn, glia is frozen"), 200)
        assert time.monotonic() - started >= BRIDGE_TIMEOUT_S
        # user_may_create_room fails closed: Synapse's answer to a module that raised.
        world.expect(world.bob.create_room(), 500, "M_UNKNOWN")
    stored = world.expect(world.bob.event(world.room_id, sent.body["event_id"]), 200)
    assert stored.body["content"]["body"] == "darn, glia is frozen"  # nobody censored it
    assert "glia did not answer" in world.synapse.log()


def test_a_stopped_glia_follows_each_callbacks_failure_mode(world: World) -> None:
    with glia_stopped(world):
        # fail open: sending (spam check, event rules, account validity) keeps working ...
        world.expect(world.alice.send_text(world.room_id, "glia is down"), 200)
        # ... which also lets expired users back in, once the bridge no longer reuses glia's
        # lasting answers (it trusts them for FRESH_S after glia's last response)
        time.sleep(FRESH_S + 0.2)
        world.expect(world.expired.whoami(), 200)
        # fail closed: room creation and invites fail as if the module had raised.
        world.expect(world.bob.create_room(), 500, "M_UNKNOWN")
        world.expect(world.alice.invite(world.room_id, mxid("mallory")), 500, "M_UNKNOWN")
        status, _, body = http_request("GET", world.synapse.url + "/_synapse/client/demo/hello?name=x")
        assert (status, json.loads(body)["errcode"]) == (502, "M_UNKNOWN")
    assert "glia is unreachable" in world.synapse.log()
    # glia is back: its modules decide again.
    world.expect(world.evilguy.create_room(), 403, "M_FORBIDDEN")
    world.expect(world.expired.whoami(), 403, "ORG_MATRIX_EXPIRED_ACCOUNT")


@contextmanager
def glia_frozen(world: World) -> Iterator[None]:
    """glia stopped with SIGSTOP: connections open, no answers."""
    world.glia.process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        world.glia.process.signal(signal.SIGCONT)


@contextmanager
def glia_stopped(world: World) -> Iterator[None]:
    """glia terminated (connections refused), restarted afterwards."""
    world.glia.stop()
    try:
        yield
    finally:
        world.glia.restart()


def glia_metrics(world: World) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """glia's /metrics, parsed by the Prometheus client library's own text parser."""
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, raw = http_request("GET", world.glia.url + "/metrics")
    assert status == 200, raw
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(raw.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_glias_metrics_count_the_decisions_synapse_asked_for(world: World) -> None:
    key = ("glia_decisions_total", (("callback", "check_event_for_spam"), ("result", "deny")))
    before = glia_metrics(world).get(key, 0.0)
    world.expect(world.spammer.send_text(world.room_id, "more spam"), 403, "M_FORBIDDEN")
    after = glia_metrics(world)
    assert after.get(key, 0.0) >= before + 1
    invocations = (
        "glia_invocations_total",
        (("callback", "check_event_for_spam"), ("module", "list_spam_checker"), ("outcome", "deny")),
    )
    assert after.get(invocations, 0.0) >= 1
    assert after[("glia_module_state", (("module", "demo"), ("state", "running")))] == 1.0
