"""End to end: a real Synapse whose only module is the real synapse-http-antispam (PyPI 0.5.1),
pointed at glia's ingress; glia fanning its callbacks out to fakes of Meowlnir and Draupnir
(real HTTP servers, `glia-antispam-fake`) through its `http_antispam` module, beside its own
modules; and clients speaking the client-server API.

The tests share one Synapse and one glia; the tests that take glia away or change its token put
it back. The last test runs a second Synapse to compare the module's bytes with glia's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from antispam import INGRESS_PATH, AntispamFake, antispam_module
from harness import GLIA_TOKEN, Client, Glia, Reply, Synapse, free_port, mxid, wait_until

try:  # the module under test, which Synapse loads from the venv
    import synapse_http_antispam  # noqa: F401
except ImportError as e:
    raise pytest.UsageError(
        f"{e}: run the tests with tests/e2e/run.sh, whose tests/e2e/setup.sh installs synapse-http-antispam "
        "0.5.1 into tests/e2e/.venv"
    ) from e

MANAGEMENT_ROOM = "!mgmt:localhost"
#: Users Meowlnir's policy lists ban, Draupnir's protection refuses, or both.
MEOW_BANNED, DRAU_BANNED, BOTH_BANNED = mxid("meowbanned"), mxid("draubanned"), mxid("bothbanned")
#: A user on whom a Draupnir protection hangs.
SLOWPOKE = mxid("slowpoke")
#: The callbacks Synapse's module forwards to glia.
FORWARDED = [
    "user_may_invite",
    "federated_user_may_invite",
    "user_may_join_room",
    "check_event_for_spam",
    "user_may_create_room",
]
USERS = ("alice", "bob", "spammer", "mallory", "meowbanned", "draubanned", "bothbanned", "slowpoke")


@dataclass
class Fakes:
    meowlnir: AntispamFake
    draupnir: AntispamFake
    #: The end of glia's `relay` module: a server that allows everything and records it.
    relay: AntispamFake


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    workdir = tmp_path_factory.mktemp("fakes")
    meowlnir = {
        "meowlnir": {
            "secret": "meow-secret",
            "server_name": "localhost",
            "management_rooms": [MANAGEMENT_ROOM],
            "filter_local_invites": True,
            "banned_users": [MEOW_BANNED, BOTH_BANNED],
        }
    }
    draupnir = {
        "draupnir": {
            "authorization": "draupnir-secret",
            "block_invitations_from": [DRAU_BANNED, BOTH_BANNED],
            "stuck_on": [SLOWPOKE],
        }
    }
    started = Fakes(
        AntispamFake.start(workdir, "meowlnir", meowlnir),
        AntispamFake.start(workdir, "draupnir", draupnir),
        AntispamFake.start(workdir, "relay", "nothing"),
    )
    yield started
    for fake in (started.meowlnir, started.draupnir, started.relay):
        fake.stop()


def glia_config(port: int, workdir: Path, fakes: Fakes, token: str = GLIA_TOKEN) -> dict[str, Any]:
    """glia behind synapse-http-antispam: both fakes and glia's own modules on the same
    callbacks, in this order."""

    def http_antispam(name: str, base_url: str, config: dict[str, Any], **entry: Any) -> dict[str, Any]:
        return {"module": "http_antispam", "name": name, **entry, "config": {"base_url": base_url, **config}}

    invites = ["user_may_invite"]
    return {
        "listen": f"127.0.0.1:{port}",
        "auth_token": token,
        "deadline": "10s",
        "telemetry": {"decision_log": {"output": "file", "path": str(workdir / "decisions.jsonl")}},
        "modules": [
            http_antispam(
                "meowlnir",
                fakes.meowlnir.base_url,
                {
                    "authorization": "meow-secret",
                    "enabled_callbacks": [*invites, "user_may_join_room"],
                    "async": {"user_may_join_room": True},
                },
                timeout="2s",
                failure_policy={"default": "allow"},
            ),
            http_antispam(
                "draupnir",
                fakes.draupnir.base_url,
                {"authorization": "draupnir-secret", "enabled_callbacks": invites},
                timeout="500ms",
                failure_policy={"user_may_invite": "deny"},
            ),
            {
                "module": "user_restrictions",
                "config": {"rules": [{"match": "@(mallory|bothbanned):localhost", "deny": ["invite"]}]},
            },
            {"module": "list_spam_checker", "config": {"evil_users": [mxid("spammer")]}},
            {
                "module": "message_policy",
                "config": {"blocked_keywords": ["buy followers"], "errcode": "ORG_GLIA_BLOCKED"},
            },
            # Meowlnir told about a management room it does not have: 404 M_NOT_FOUND.
            http_antispam(
                "meowlnir-misconfigured",
                f"{fakes.meowlnir.root}/_meowlnir/antispam/!nowhere:localhost",
                {"authorization": "meow-secret", "enabled_callbacks": invites},
                failure_policy={"default": "allow"},
            ),
            http_antispam(
                "relay",
                fakes.relay.base_url,
                {"enabled_callbacks": [*invites, "user_may_join_room", "check_event_for_spam", "user_may_create_room"]},
            ),
        ],
    }


@pytest.fixture(scope="module")
def glia(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory, fakes: Fakes) -> Iterator[Glia]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("glia-antispam")
    running = Glia.start(glia_bin, workdir, glia_config(port, workdir, fakes), port)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def synapse(glia: Glia, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """Synapse with synapse-http-antispam as its only module, pointed at glia."""
    module = antispam_module(
        glia.url + INGRESS_PATH, authorization=GLIA_TOKEN, do_ping=True, enabled_callbacks=FORWARDED
    )
    running = Synapse.start(tmp_path_factory.mktemp("synapse-antispam"), [module])
    yield running
    running.stop()


@dataclass
class World:
    glia: Glia
    synapse: Synapse
    fakes: Fakes
    users: dict[str, Client]

    def __getattr__(self, name: str) -> Client:
        try:
            return self.users[name]
        except KeyError:
            raise AttributeError(name) from None

    def expect(self, reply: Reply, status: int, errcode: str | None = None, error: str | None = None) -> Reply:
        """Asserts `reply`'s status (and errcode and message), showing the logs if not."""
        body = reply.body if isinstance(reply.body, dict) else {}
        wrong_errcode = errcode is not None and body.get("errcode") != errcode
        wrong_error = error is not None and body.get("error") != error
        if reply.status != status or wrong_errcode or wrong_error:
            tail = "\n".join(self.synapse.log().splitlines()[-40:])
            pytest.fail(
                f"expected {status} {errcode or ''} {error or ''}, got {reply.status} {reply.body}\n"
                f"--- Synapse log ---\n{tail}\n{self.glia.process.tail()}",
                pytrace=True,
            )
        return reply

    def decisions(self) -> list[dict[str, Any]]:
        """glia's decision log so far."""
        path = self.glia.config_path.parent / "decisions.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def decision_where(self, callback: str, module: str, outcome: str) -> dict[str, Any]:
        """The last decision on `callback` in which `module` ended with `outcome`."""

        def found() -> dict[str, Any] | None:
            for record in reversed(self.decisions()):
                parts = {m["module"]: m for m in record["modules"]}
                if record["callback"] == callback and parts.get(module, {}).get("outcome") == outcome:
                    return record
            return None

        wait_until(lambda: found() is not None, 10, f"a decision where {module} ended {outcome}", str)
        record = found()
        assert record is not None
        return record

    def room_of(self, user: str, **body: Any) -> str:
        """A fresh room created by `user` (with these `/createRoom` settings)."""
        return self.expect(self.users[user].create_room(**body), 200).body["room_id"]


@pytest.fixture(scope="module")
def world(glia: Glia, synapse: Synapse, fakes: Fakes) -> World:
    return World(glia, synapse, fakes, {name: synapse.register(name) for name in USERS})


# ----- (a) synapse-http-antispam pointed at glia -------------------------------------------


def test_the_module_pings_glia_at_start_up(world: World) -> None:
    wait_until(
        lambda: "Successfully pinged antispam server" in world.synapse.log(),
        30,
        "synapse-http-antispam's ping of glia",
        lambda: world.synapse.log()[-3000:],
    )


def test_an_invite_a_glia_module_denies_reaches_the_client_with_its_errcode_and_message(world: World) -> None:
    room = world.room_of("mallory")
    world.expect(
        world.mallory.invite(room, mxid("bob")), 403, "M_FORBIDDEN", "Invites have been disabled on this server"
    )
    record = world.decision_where("user_may_invite", "user_restrictions", "deny")
    assert record["route"] == "http_antispam"
    assert record["winner"] == "user_restrictions"


def test_spam_messages_are_refused_with_the_modules_errcode_and_fields(world: World) -> None:
    room = world.room_of("alice", preset="public_chat")
    world.expect(world.spammer.join(room), 200)
    world.expect(world.spammer.send_text(room, "totally legit offer"), 403, "M_FORBIDDEN")
    refused = world.expect(world.alice.send_text(room, "buy followers cheap"), 403, "ORG_GLIA_BLOCKED")
    assert refused.body["org.glia.reason"] == "blocked_keyword"
    world.expect(world.alice.send_text(room, "hello"), 200)


# ----- (b) glia fanning out to Meowlnir, Draupnir and its own modules ---------------------


def test_the_first_deny_in_config_order_wins(world: World) -> None:
    # Meowlnir, Draupnir and user_restrictions all refuse bothbanned: Meowlnir is first.
    meow = "You're not allowed to send invites"
    drau = "You are not allowed to send invitations to this homeserver"
    room = world.room_of("bothbanned")
    world.expect(world.bothbanned.invite(room, mxid("bob")), 403, "M_FORBIDDEN", meow)
    room = world.room_of("draubanned")
    world.expect(world.draubanned.invite(room, mxid("bob")), 403, "M_FORBIDDEN", drau)
    room = world.room_of("meowbanned")
    world.expect(world.meowbanned.invite(room, mxid("bob")), 403, "M_FORBIDDEN", meow)

    # Draupnir was asked too (in parallel; its answer came too late to count), with the
    # module's body and its own token.
    def asked() -> list[Any]:
        return [r for r in world.fakes.draupnir.requests("user_may_invite") if r.json()["room_id"] == room]

    wait_until(lambda: bool(asked()), 10, "Draupnir being asked about meowbanned's invite", str)
    sent = asked()[0]
    assert sent.json() == {"inviter": mxid("meowbanned"), "invitee": mxid("bob"), "room_id": room}
    assert sent.authorization == "Bearer draupnir-secret"


def test_a_hanging_draupnir_is_cut_off_by_its_timeout_and_its_policy_applies(world: World) -> None:
    room = world.room_of("slowpoke")
    world.expect(
        world.slowpoke.invite(room, mxid("bob")), 403, "M_FORBIDDEN", "Invites have been disabled on this server"
    )
    record = world.decision_where("user_may_invite", "draupnir", "timeout")
    part = next(m for m in record["modules"] if m["module"] == "draupnir")
    assert (part["policy"], record["winner"]) == ("deny", "draupnir")


def test_meowlnir_answering_404_for_an_unknown_management_room_does_not_deny(world: World) -> None:
    room = world.room_of("alice")
    world.expect(world.alice.invite(room, mxid("bob")), 200)
    record = world.decision_where("user_may_invite", "meowlnir-misconfigured", "failed")
    part = next(m for m in record["modules"] if m["module"] == "meowlnir-misconfigured")
    assert part["policy"] == "allow"
    assert record["result"]["decision"] == "allow"
    # bob accepts: Meowlnir only watches joins, so glia posts them without waiting.
    world.expect(world.bob.join(room), 200)
    wait_until(
        lambda: any(r.json()["room"] == room for r in world.fakes.meowlnir.requests("user_may_join_room")),
        10,
        "Meowlnir being told of the join",
        str,
    )


# ----- when glia cannot decide, the module's fail_open does ----------------------------------


def test_with_glia_stopped_the_modules_fail_open_decides(world: World) -> None:
    room = world.room_of("alice")
    world.glia.stop()
    try:
        # check_event_for_spam fails open by default (synapse-http-antispam#1); invites fail closed.
        world.expect(world.alice.send_text(room, "glia is away"), 200)
        world.expect(world.alice.invite(room, mxid("bob")), 403, "M_UNKNOWN", "Failed to connect to antispam server")
    finally:
        world.glia.restart()
    world.expect(world.alice.invite(room, mxid("bob")), 200)


def test_a_wrong_token_is_answered_so_that_fail_open_decides(world: World) -> None:
    room = world.room_of("alice")
    config = yaml.safe_load(world.glia.config_path.read_text())
    world.glia.stop()
    world.glia.config_path.write_text(yaml.safe_dump({**config, "auth_token": "another-token"}, sort_keys=False))
    world.glia.restart()
    try:
        # glia answers 403 in plain text: the module cannot read it, so fail_open decides.
        world.expect(world.alice.send_text(room, "wrong token, message through"), 200)
        world.expect(
            world.alice.invite(room, mxid("bob")), 403, "M_UNKNOWN", "Unexpected response from antispam server"
        )
    finally:
        world.glia.stop()
        world.glia.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        world.glia.restart()
    world.expect(world.alice.invite(room, mxid("bob")), 200)


# ----- base URLs as operators write them -------------------------------------------------------


def test_a_base_url_ending_in_a_slash_reaches_the_callbacks(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """synapse-http-antispam posts to f"{base_url}/{callback}": with a `base_url` ending in `/`,
    to `.../http-antispam//check_event_for_spam`. glia's modules decide those requests as any
    other (glia once answered them a JSON 404, which the module reads as a deny: every message
    and invite was refused, whatever `fail_open` said)."""
    synapse = Synapse.start(
        tmp_path_factory.mktemp("synapse-trailing-slash"),
        [
            antispam_module(
                world.glia.url + INGRESS_PATH + "/",
                authorization=GLIA_TOKEN,
                do_ping=True,
                enabled_callbacks=FORWARDED,
            )
        ],
    )
    try:
        erin, mallory, frank = (synapse.register(name) for name in ("erin", "mallory", "frank"))
        room = erin.create_room(preset="public_chat")
        assert room.status == 200, room
        room_id = room.body["room_id"]
        assert erin.send_text(room_id, "hello through a slash").status == 200
        spam = erin.send_text(room_id, "buy followers cheap")
        assert (spam.status, spam.body.get("errcode")) == (403, "ORG_GLIA_BLOCKED"), spam
        assert erin.invite(room_id, frank.user_id).status == 200
        mallorys = mallory.create_room()
        assert mallorys.status == 200, mallorys
        refused = mallory.invite(mallorys.body["room_id"], erin.user_id)
        assert refused.status == 403, refused
        assert refused.body["error"] == "Invites have been disabled on this server", refused
        wait_until(
            lambda: "Successfully pinged antispam server" in synapse.log(),
            30,
            "synapse-http-antispam's ping of glia through a slash",
            lambda: synapse.log()[-3000:],
        )
    finally:
        synapse.stop()


# ----- glia relays the module's bytes ------------------------------------------------------


def test_servers_behind_glia_get_the_bytes_the_module_sends(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second Synapse runs two copies of synapse-http-antispam: the first posts to a recording
    server directly, the second to glia, whose `relay` module posts to another. Every body the
    first server got, the second got too, byte for byte."""
    workdir = tmp_path_factory.mktemp("bytes")
    direct = AntispamFake.start(workdir, "direct", "nothing")
    callbacks = ["user_may_invite", "user_may_join_room", "check_event_for_spam", "user_may_create_room"]
    synapse = Synapse.start(
        workdir / "synapse",
        [
            antispam_module(direct.base_url, enabled_callbacks=callbacks),
            antispam_module(world.glia.url + INGRESS_PATH, authorization=GLIA_TOKEN, enabled_callbacks=callbacks),
        ],
    )
    try:
        carol, dave = synapse.register("carol"), synapse.register("dave")
        room = carol.create_room(preset="public_chat")
        assert room.status == 200, room
        room_id = room.body["room_id"]
        assert carol.invite(room_id, dave.user_id).status == 200
        assert dave.join(room_id).status == 200
        assert carol.send_text(room_id, 'héllo, "quoted" \\ and\nnewline').status == 200
        sent = direct.requests()
        relayed = {r.body for r in world.fakes.relay.requests()}
        assert {r.callback for r in sent} == set(callbacks), [r.path for r in sent]
        for request in sent:
            assert request.body in relayed, f"{request.callback}: {request.body} was not relayed as is"
    finally:
        synapse.stop()
        direct.stop()
