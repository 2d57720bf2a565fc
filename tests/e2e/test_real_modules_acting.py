"""Real Synapse modules from PyPI that act through the `ModuleApi`, unchanged, run natively in
a real Synapse and hosted by glia behind another, with the same client actions on both:

- synapse-token-authenticator (JWT login type `com.famedly.login.token`: its auth checker
  registers the user, makes them admin and sets their display name: `register_user`,
  `set_user_admin`, `set_displayname` through the bridge);
- synapse-auto-accept-invite (`on_new_event`: joins invited users with
  `update_room_membership` and marks DMs in `m.direct` through `account_data_manager`);
- synapse-freeze-room (`check_event_allowed`: when the last admin leaves it sends state events
  from inside the check, `create_and_send_event_into_room`, which Synapse checks again, and
  answers with a replacement event);
- synapse-registration-notifier (`check_registration_for_spam`: announces each registration
  in a room with `create_and_send_event_into_room`);
- synapse-room-access-rules (Tchap's rules: `on_create_room` edits the room's initial state
  and power levels; `check_event_allowed` and `check_visibility_can_be_modified` refuse).

Both homeservers are named `localhost`; they do not federate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from differential import Both, Side, compare_sides
from harness import GLIA_TOKEN, Glia, Reply, Synapse, bridge_module, free_port, http_request, wait_until
from hosting import bridge_module_api, fresh, python_section

#: HS512 wants a key of 512 bits at least (jwcrypto refuses a shorter one).
JWT_SECRET = "e2e-jwt-secret-" + "x" * 64
FORBIDDEN_DOMAIN = "forbidden.example"
#: synapse-room-access-rules 1.0.0 (2021) puts the creator in the power levels' `users`, which
#: room version 12 (Synapse's default) forbids: with it every room creation fails, natively as
#: hosted (`test_room_version_12_rooms_cannot_be_created_with_access_rules_as_natively`). Its
#: operators stay on version 11, as here.
OVERRIDES = {"default_room_version": "11"}

#: The modules' `modules:` entries, the same for Synapse and for glia (with glia's names).
MODULES: list[tuple[str, dict[str, Any]]] = [
    (
        "token_auth",
        {
            "module": "synapse_token_authenticator.TokenAuthenticator",
            "config": {"jwt": {"secret": JWT_SECRET, "algorithm": "HS512", "allow_registration": True}},
        },
    ),
    ("auto_accept", {"module": "synapse_auto_accept_invite.InviteAutoAccepter", "config": {}}),
    ("freeze_room", {"module": "freeze_room.FreezeRoom", "config": {}}),
    (
        "access_rules",
        {
            "module": "room_access_rules.RoomAccessRules",
            "config": {"id_server": "id.example.org", "domains_forbidden_when_restricted": [FORBIDDEN_DOMAIN]},
        },
    ),
]


@dataclass
class Acting:
    """The two homeservers and glia."""

    native: Side
    glia_side: Side
    glia: Glia
    #: The registration notifier's room on each side.
    notices: Both[str] | None = None

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.native, self.glia_side

    def compare(self, action: Any, ignore: tuple[str, ...] = ()) -> Both[Reply]:
        return compare_sides(self.native, self.glia_side, action, ignore, self.glia.process.tail)

    def on_both(self, action: Any) -> Both[Any]:
        return Both(action(self.native), action(self.glia_side))

    def room_of(self, owner: str, **body: Any) -> Both[str]:
        def create(side: Side) -> str:
            reply = side.user(owner).create_room(**body)
            assert reply.status == 200, (side.label, reply, side.log_tail())
            return str(reply.body["room_id"])

        return self.on_both(create)


HERALD = "herald"


def notifier(room_id: str) -> tuple[str, dict[str, Any]]:
    """synapse-registration-notifier's entry: its notices go to `room_id`, sent as the herald."""
    config = {"notification_room": room_id, "admin_user_id": f"@{HERALD}:localhost"}
    return "notifier", {"module": "synapse_registration_notifier.RegistrationNotifier", "config": config}


def glia_config(port: int, module_api_port: int, modules: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "python": python_section("localhost", module_api_port),
        "modules": [{**entry, "name": name, "timeout": "20s"} for name, entry in modules],
    }


def reload(glia: Glia, config: dict[str, Any]) -> None:
    """Reloads glia with `config`: only the changed module's host is replaced."""
    glia.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    headers = {"Authorization": f"Bearer {GLIA_TOKEN}"}
    status, _, raw = http_request("POST", f"{glia.url}/_glia/v1/admin/reload", b"", headers, timeout=120)
    assert status == 200 and json.loads(raw)["replaced"] == ["notifier"], raw


@pytest.fixture(scope="module")
def acting(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acting]:
    """The registration notifier needs its room's id in its config, known only once the
    homeserver runs: both sides start with a placeholder room, the herald makes the room,
    native Synapse restarts with its id, and glia reloads (replacing only that module's host;
    the glia side's bridge keeps the same callbacks)."""
    workdir = tmp_path_factory.mktemp("real-modules-acting")
    started: list[Any] = []
    placeholder = [*MODULES, notifier("!placeholder:localhost")]
    try:
        module_api_port, glia_port = free_port(), free_port()
        (workdir / "glia").mkdir()
        glia = Glia.start(glia_bin, workdir / "glia", glia_config(glia_port, module_api_port, placeholder), glia_port)
        started.append(glia)
        native = Synapse.start(workdir / "native", [entry for _, entry in placeholder], overrides=OVERRIDES)
        started.append(native)
        bridge = bridge_module(
            glia.url, timeout=30, module_api=bridge_module_api(module_api_port), web_resource_paths=[]
        )
        via_glia = Synapse.start(workdir / "glia-synapse", [bridge], overrides=OVERRIDES)
        started.append(via_glia)
        world = Acting(Side("native", native, "localhost"), Side("glia", via_glia, "localhost"), glia)
        rooms = world.room_of(HERALD)
        native.stop()
        modules = [*MODULES, notifier(rooms.native)]
        native = Synapse.start(workdir / "native", [e for _, e in modules], native.port, overrides=OVERRIDES)
        started[1] = world.native.synapse = native
        reload(glia, glia_config(glia_port, module_api_port, [*MODULES, notifier(rooms.glia)]))
        world.notices = rooms
    except BaseException:
        for thing in reversed(started):
            thing.stop()
        raise
    yield world
    for thing in reversed(started):
        thing.stop()


def anonymous(side: Side, method: str, path: str, body: Any = None) -> Reply:
    status, headers, raw = http_request(method, f"{side.synapse.url}{path}", body)
    return Reply(status, json.loads(raw) if raw else None, headers)


def state(side: Side, user: str, room_id: str, event_type: str) -> Any:
    """The content of a room's state event (`user` reads it), or the error."""
    reply = side.user(user).request("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}/")
    return reply.body if reply.status == 200 else (reply.status, reply.errcode)


# -- synapse-token-authenticator ----------------------------------------------------------------


def jwt_login(user: str, claims: dict[str, Any], secret: str = JWT_SECRET) -> dict[str, Any]:
    import base64

    from jwcrypto import jwk, jwt

    key = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(secret.encode()).decode())
    token = jwt.JWT(header={"alg": "HS512"}, claims={"sub": user, "exp": int(time.time()) + 600, **claims})
    token.make_signed_token(key)
    return {
        "type": "com.famedly.login.token",
        "identifier": {"type": "m.id.user", "user": user},
        "token": token.serialize(),
    }


def test_a_jwt_login_registers_the_user_makes_them_admin_and_sets_their_name_as_natively(acting: Acting) -> None:
    """The auth checker calls `register_user`, `set_user_admin` and `set_displayname`: hosted,
    through the bridge (before, `set_displayname` raised `NotAvailableOutOfProcess` and the
    login failed)."""
    user = fresh("zoe")
    login = jwt_login(user, {"admin": True, "displayname": "Zoe Z."})
    replies = acting.compare(lambda s: anonymous(s, "POST", "/_matrix/client/v3/login", login))
    assert replies.native.status == 200, replies.native

    def seen(side: Side) -> tuple[Any, ...]:
        reply = replies[side]
        token = {"Authorization": f"Bearer {reply.body['access_token']}"}
        mxid = reply.body["user_id"]
        _, _, profile = http_request("GET", f"{side.synapse.url}/_matrix/client/v3/profile/{quote(mxid)}/displayname")
        status, _, admin = http_request(
            "GET", f"{side.synapse.url}/_synapse/admin/v1/users/{quote(mxid)}/admin", headers=token
        )
        return mxid, json.loads(profile), status, json.loads(admin)

    assert acting.on_both(seen) == Both(*[(f"@{user}:localhost", {"displayname": "Zoe Z."}, 200, {"admin": True})] * 2)
    forged = jwt_login(user, {}, secret="not-the-secret-" + "y" * 64)
    refused = acting.compare(lambda s: anonymous(s, "POST", "/_matrix/client/v3/login", forged))
    assert (refused.native.status, refused.native.errcode) == (403, "M_FORBIDDEN")


def test_the_jwt_login_type_is_offered_as_natively(acting: Acting) -> None:
    flows = acting.on_both(
        lambda s: sorted(f["type"] for f in anonymous(s, "GET", "/_matrix/client/v3/login").body["flows"])
    )
    assert flows.native == flows.glia and "com.famedly.login.token" in flows.native


# -- synapse-registration-notifier --------------------------------------------------------------


def test_a_registration_is_announced_in_the_notice_room_as_natively(acting: Acting) -> None:
    """`check_registration_for_spam` allows the registration and sends a notice into the
    configured room as the herald (`create_and_send_event_into_room`)."""
    assert acting.notices is not None
    newcomer = fresh("newcomer")
    for side in acting.sides:
        side.user(newcomer)

    def notice(side: Side) -> list[str]:
        assert acting.notices is not None
        bodies = side.user(HERALD).message_bodies(acting.notices[side])
        return [body.split("- Originating")[0] for sender, body in bodies if newcomer in body]

    wait_until(lambda: all(notice(side) for side in acting.sides), 30, "the notices on both sides")
    assert notice(acting.native) == notice(acting.glia_side)
    assert f"Username: {newcomer} (@{newcomer}:localhost)" in notice(acting.native)[0]


# -- synapse-auto-accept-invite -----------------------------------------------------------------


def membership(side: Side, user: str, room_id: str) -> Any:
    reply = side.user(user).request(
        "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.member/{quote(side.mxid(user))}"
    )
    return reply.body.get("membership") if reply.status == 200 else reply.status


def test_an_invite_is_accepted_by_the_module_and_a_dm_is_marked_as_natively(acting: Acting) -> None:
    guest = fresh("guest")
    for side in acting.sides:
        side.user(guest)
    rooms = acting.room_of("alice", is_direct=True, invite=[f"@{guest}:localhost"], preset="trusted_private_chat")
    for side in acting.sides:
        wait_until(
            lambda side=side: membership(side, guest, rooms[side]) == "join",
            30,
            f"{guest} joined by the module ({side.label})",
            lambda side=side: side.log_tail() + acting.glia.process.tail(),
        )

    def direct(side: Side) -> Any:
        path = f"/_matrix/client/v3/user/{quote(side.mxid(guest))}/account_data/m.direct"
        reply = side.user(guest).request("GET", path)
        return {k: len(v) for k, v in reply.body.items()} if reply.status == 200 else reply.status

    wait_until(
        lambda: direct(acting.native) == direct(acting.glia_side) == {"@alice:localhost": 1}, 30, "m.direct on both"
    )


# -- synapse-freeze-room ------------------------------------------------------------------------


def test_the_last_admin_leaving_does_not_freeze_the_room_natively_or_hosted(acting: Acting) -> None:
    """freeze-room 1.1.0 reads the power levels only when their content `isinstance(dict)`;
    Synapse 1.163's events carry a `JsonObject`, so the last admin leaving freezes nothing, in
    Synapse as in glia's host (the module's limit, found by running it)."""
    member = fresh("member")
    rooms = acting.room_of("alice", preset="public_chat")
    for side in acting.sides:
        assert side.user(member).join(rooms[side]).status == 200
    path = "/_matrix/client/v3/rooms/{}/leave"
    left = acting.compare(lambda s: s.user("alice").request("POST", path.format(quote(rooms[s])), {}))
    assert left.native.status == 200
    frozen = acting.on_both(lambda s: state(s, member, rooms[s], "org.matrix.room.frozen"))
    assert frozen.native == frozen.glia == (404, "M_NOT_FOUND")
    assert acting.compare(lambda s: s.user(member).send_text(rooms[s], "still here")).native.status == 200


def test_freezing_a_room_sends_the_modules_events_then_fails_as_natively(acting: Acting) -> None:
    """An admin freezing a public room: the module's check sends a join-rules event from inside
    the check (`create_and_send_event_into_room`, which Synapse checks again: through glia and
    the bridge, nested, on the hosted side), then fails on the power levels' `JsonObject`
    (see above). Both sides: the join rule changed, the freeze refused the same way."""
    rooms = acting.room_of("alice", preset="public_chat")
    path = "/_matrix/client/v3/rooms/{}/state/org.matrix.room.frozen/"
    replies = acting.compare(
        lambda s: s.user("alice").request("PUT", path.format(quote(rooms[s])), {"frozen": True}), ignore=("error",)
    )
    assert replies.native.status >= 400, replies.native
    rules = acting.on_both(lambda s: state(s, "alice", rooms[s], "m.room.join_rules"))
    assert rules.native == rules.glia == {"join_rule": "invite"}
    frozen = acting.on_both(lambda s: state(s, "alice", rooms[s], "org.matrix.room.frozen"))
    assert frozen.native == frozen.glia == (404, "M_NOT_FOUND")


# -- synapse-room-access-rules ------------------------------------------------------------------


def test_a_new_room_gets_the_default_access_rule_and_power_levels_as_natively(acting: Acting) -> None:
    """`on_create_room` adds the rules event to the initial state and overrides the power
    levels: the room's state shows the module's edits."""
    rooms = acting.room_of("alice")
    rule = acting.on_both(lambda s: state(s, "alice", rooms[s], "im.vector.room.access_rules"))
    assert rule.native == rule.glia == {"rule": "restricted"}
    levels = acting.on_both(lambda s: state(s, "alice", rooms[s], "m.room.power_levels"))
    assert levels.native == levels.glia


def test_an_invalid_access_rule_is_refused_at_creation_as_natively(acting: Acting) -> None:
    bad = {"initial_state": [{"type": "im.vector.room.access_rules", "state_key": "", "content": {"rule": "nope"}}]}
    replies = acting.compare(lambda s: s.user("alice").create_room(**bad))
    assert (replies.native.status, replies.native.errcode) == (400, "M_UNKNOWN")
    direct = {"is_direct": True, "preset": "public_chat"}
    replies = acting.compare(lambda s: s.user("alice").create_room(**direct))
    assert replies.native.status == 400


def test_a_restricted_rooms_rule_change_and_publication_are_refused_as_natively(acting: Acting) -> None:
    rooms = acting.room_of("alice")
    change = acting.compare(
        lambda s: s.user("alice").request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(rooms[s])}/state/im.vector.room.access_rules/",
            {"rule": "direct"},
        )
    )
    assert (change.native.status, change.native.errcode) == (403, "M_FORBIDDEN")
    publish = acting.compare(
        lambda s: s.user("alice").request(
            "PUT", f"/_matrix/client/v3/directory/list/room/{quote(rooms[s])}", {"visibility": "public"}
        )
    )
    assert publish.native.status == 403


def test_room_version_12_rooms_cannot_be_created_with_access_rules_as_natively(acting: Acting) -> None:
    """The module's power levels name the creator, which room version 12 forbids: the same
    400 on both sides (a limit of the module, not of hosting)."""
    replies = acting.compare(lambda s: s.user("alice").create_room(room_version="12"))
    assert (replies.native.status, replies.native.errcode) == (400, "M_UNKNOWN")


# -- synapse-stickerpicker ----------------------------------------------------------------------

STICKERPICKER = {
    "module": "synapse_stickerpicker.AppendStickerPickerData",
    "config": {"stickerpicker_url": "https://x/"},
}
#: What both say: its constructor takes keyword-only arguments (the legacy module interface),
#: and Synapse's module loader, which the host uses, passes `(config, api)`.
CONSTRUCTOR_ERROR = "takes 1 positional argument but 3 were given"


def test_a_module_whose_constructor_fails_fails_the_same_way_natively_and_hosted(
    glia_bin: Path, tmp_path: Path
) -> None:
    """synapse-stickerpicker 0.1.0 cannot be constructed by Synapse 1.163 (and would reach
    `api.http_client.hs.datastores`, Synapse's internals, if it could): Synapse refuses to
    start with the constructor's TypeError, and so does `glia serve`, naming the module."""
    with pytest.raises(RuntimeError, match="exited at start-up"):
        Synapse.start(tmp_path / "native", [STICKERPICKER])
    assert CONSTRUCTOR_ERROR in (tmp_path / "native" / "synapse.out").read_text(errors="replace")
    port = free_port()
    (tmp_path / "glia").mkdir()
    config = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": "e2e-glia-token",
        "python": python_section("localhost"),
        "modules": [{**STICKERPICKER, "name": "stickerpicker"}],
    }
    with pytest.raises(RuntimeError, match="exited at start-up") as refused:
        Glia.start(glia_bin, tmp_path / "glia", config, port)
    assert "cannot start modules[0] (stickerpicker): constructor failed" in str(refused.value)
    assert CONSTRUCTOR_ERROR in str(refused.value)
