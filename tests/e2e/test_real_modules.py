"""Real Synapse modules from PyPI (and one from git), unchanged, run natively in a real Synapse
and through the bridge, glia and glia's Python host, with the same client actions on both: the
client must see the same statuses, errcodes and results.

- matrix-synapse-ldap3 against a real OpenLDAP server (Debian's slapd, started here), through
  a relay that can make the server hang;
- shared-secret-authenticator (an auth checker with a login type of its own);
- synapse-domain-rule-checker (from git: the PyPI release is empty, see modules/README.md),
  which asks the homeserver for room state and the public room list, through the bridge's
  ModuleApi channel;
- synapse-http-antispam, whose `http_client` posts to a fake of Draupnir.

Both homeservers are named `localhost`; they do not federate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from antispam import AntispamFake, antispam_module
from differential import Both, Side, compare_sides
from harness import Glia, Reply, Synapse, bridge_module, free_port, http_request, wait_until
from hosting import (
    VENDORED_MODULES,
    LdapLink,
    Slapd,
    bridge_module_api,
    fresh,
    module_info,
    python_path_env,
    python_section,
)

LDAP_USERS = {"lorna": "lorna-ldap-pw", "lars": "lars-ldap-pw"}
SHARED_SECRET = "e2e-shared-secret"
SPAMMER = "@spammy:localhost"
DRAUPNIR_SECRET = "draupnir-secret"
#: Synapse lets only admins publish rooms to the directory unless told otherwise.
PUBLISHING = {"room_list_publication_rules": [{"action": "allow"}]}


def synapse_modules(ldap_uri: str, draupnir_url: str) -> list[dict[str, Any]]:
    """The four modules' `modules:` entries, the same for Synapse and for glia."""
    return [
        {
            "module": "ldap_auth_provider.LdapAuthProviderModule",
            "config": {
                "enabled": True,
                "uri": ldap_uri,
                "start_tls": False,
                "base": "ou=users,dc=example,dc=com",
                "attributes": {"uid": "uid", "mail": "mail", "name": "cn"},
            },
        },
        {"module": "shared_secret_authenticator.SharedSecretAuthProvider", "config": {"shared_secret": SHARED_SECRET}},
        {
            "module": "synapse_domain_rule_checker.DomainRuleChecker",
            "config": {
                "can_invite_if_not_in_domain_mapping": False,
                "domain_mapping": {"localhost": ["localhost"]},
                "can_only_invite_during_room_creation": True,
                "domains_prevented_from_being_invited_to_published_rooms": ["localhost"],
            },
        },
        antispam_module(
            draupnir_url,
            authorization=DRAUPNIR_SECRET,
            enabled_callbacks=["check_event_for_spam"],
        ),
    ]


#: glia's settings for each module: its name, and for LDAP a timeout well below a client's
#: patience and a watchdog that restarts a host whose LDAP calls hang.
GLIA_ENTRIES = [
    {"name": "ldap", "timeout": "2s", "restart": {"watchdog": "8s"}},
    {"name": "shared_secret"},
    {"name": "domain_rules"},
    {"name": "http_antispam"},
]


@dataclass
class RealWorld:
    """The running servers."""

    native: Side
    glia_side: Side
    glia: Glia
    slapd: Slapd
    ldap: LdapLink
    draupnir: AntispamFake

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.native, self.glia_side

    def compare(self, action: Any, ignore: tuple[str, ...] = ()) -> Both[Reply]:
        return compare_sides(self.native, self.glia_side, action, ignore, self.glia.process.tail)

    def room_of(self, owner: str, **body: Any) -> Both[str]:
        """A fresh room of `owner` on both sides."""

        def create(side: Side) -> str:
            reply = side.user(owner).create_room(**body)
            assert reply.status == 200, (side.label, reply, side.log_tail())
            return str(reply.body["room_id"])

        return Both(create(self.native), create(self.glia_side))


@pytest.fixture(scope="module")
def real(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealWorld]:
    workdir = tmp_path_factory.mktemp("real-modules")
    started: list[Any] = []
    try:
        slapd = Slapd.start(workdir / "slapd", LDAP_USERS)
        started.append(slapd)
        ldap = LdapLink(slapd.port)
        started.append(ldap)
        draupnir = AntispamFake.start(
            workdir,
            "draupnir",
            {"draupnir": {"authorization": DRAUPNIR_SECRET, "refuse_events_from": [SPAMMER]}},
        )
        started.append(draupnir)
        modules = synapse_modules(ldap.uri, draupnir.base_url)
        env = python_path_env(VENDORED_MODULES)
        module_api_port, glia_port = free_port(), free_port()
        glia_config = {
            "listen": f"127.0.0.1:{glia_port}",
            "auth_token": "e2e-glia-token",
            "python": python_section("localhost", module_api_port),
            "modules": [{**entry, **settings} for entry, settings in zip(modules, GLIA_ENTRIES, strict=True)],
        }
        (workdir / "glia").mkdir()
        glia = Glia.start(glia_bin, workdir / "glia", glia_config, glia_port, env=env)
        started.append(glia)
        native = Synapse.start(workdir / "native", modules, env=env, overrides=PUBLISHING)
        started.append(native)
        via_glia = Synapse.start(
            workdir / "glia-synapse",
            [bridge_module(glia.url, timeout=10, module_api=bridge_module_api(module_api_port), web_resource_paths=[])],
            overrides=PUBLISHING,
        )
        started.append(via_glia)
    except BaseException:
        for thing in reversed(started):
            thing.stop()
        raise
    world = RealWorld(
        Side("native", native, "localhost"), Side("glia", via_glia, "localhost"), glia, slapd, ldap, draupnir
    )
    yield world
    for thing in reversed(started):
        thing.stop()


def login(side: Side, body: dict[str, Any]) -> Reply:
    """`POST /login` (no access token)."""
    status, headers, raw = http_request("POST", f"{side.synapse.url}/_matrix/client/v3/login", body)
    return Reply(status, json.loads(raw) if raw else None, headers)


def password_login(user: str, password: str) -> dict[str, Any]:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}


def logged_in_as(side: Side, reply: Reply) -> str:
    """The user a successful login's token belongs to (`whoami`)."""
    assert reply.status == 200, (side.label, reply, side.log_tail())
    status, _, body = http_request(
        "GET",
        f"{side.synapse.url}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {reply.body['access_token']}"},
    )
    assert status == 200, body
    return str(json.loads(body)["user_id"])


# -- matrix-synapse-ldap3 -------------------------------------------------------------------------


def test_an_ldap_password_logs_in_and_registers_the_user_as_natively(real: RealWorld) -> None:
    replies = real.compare(lambda s: login(s, password_login("lorna", LDAP_USERS["lorna"])))
    assert Both(logged_in_as(real.native, replies.native), logged_in_as(real.glia_side, replies.glia)) == Both(
        "@lorna:localhost", "@lorna:localhost"
    )
    # The module registered the user in each homeserver (through the bridge's ModuleApi on
    # the glia side): a second login finds them.
    again = real.compare(lambda s: login(s, password_login("lorna", LDAP_USERS["lorna"])))
    assert again.native.status == 200


def test_a_wrong_ldap_password_is_refused_as_natively(real: RealWorld) -> None:
    replies = real.compare(lambda s: login(s, password_login("lars", "not-the-password")))
    assert (replies.native.status, replies.native.errcode) == (403, "M_FORBIDDEN")


def test_a_hanging_ldap_server_fails_the_login_through_the_modules_timeout(real: RealWorld) -> None:
    """matrix-synapse-ldap3#124: with the LDAP server hanging, a login through Synapse alone
    waits as long as ldap3 waits (it sets no receive timeout). Through glia the module's
    timeout (2 s) and its failure policy (`check_auth`: no opinion) answer, and Synapse
    refuses the password itself. Only the glia side is asked: natively the login would hang."""
    real.ldap.cut()
    try:
        reply = login(real.glia_side, password_login("lars", LDAP_USERS["lars"]))
        assert (reply.status, reply.errcode) == (403, "M_FORBIDDEN"), reply
        status, _, metrics = http_request("GET", f"{real.glia.url}/metrics")
        assert status == 200
        timeouts = [
            line
            for line in metrics.decode().splitlines()
            if line.startswith("glia_invocations_total{") and 'module="ldap"' in line and 'outcome="timeout"' in line
        ]
        assert timeouts and float(timeouts[0].rsplit(" ", 1)[1]) >= 1, metrics.decode()[-2000:]
    finally:
        real.ldap.restore()
    # With the server back, logins work again (the hung calls end when their connections do).
    wait_until(
        lambda: login(real.glia_side, password_login("lars", LDAP_USERS["lars"])).status == 200,
        30,
        "an LDAP login through glia once the server answers again",
        real.glia.process.tail,
    )


# -- shared-secret-authenticator --------------------------------------------------------------


def shared_secret_login(user: str, token: str) -> dict[str, Any]:
    return {
        "type": "com.devture.shared_secret_auth",
        "identifier": {"type": "m.id.user", "user": user},
        "token": token,
    }


def token_for(user_id: str, secret: str = SHARED_SECRET) -> str:
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha512).hexdigest()


def test_the_shared_secret_login_type_is_offered_and_works_as_natively(real: RealWorld) -> None:
    user = fresh("sharer")
    for side in real.sides:
        side.user(user)

    def flows(side: Side) -> list[str]:
        status, _, body = http_request("GET", f"{side.synapse.url}/_matrix/client/v3/login")
        assert status == 200
        return sorted(f["type"] for f in json.loads(body)["flows"])

    assert flows(real.native) == flows(real.glia_side)
    assert "com.devture.shared_secret_auth" in flows(real.glia_side)
    replies = real.compare(lambda s: login(s, shared_secret_login(user, token_for(f"@{user}:localhost"))))
    assert Both(logged_in_as(real.native, replies.native), logged_in_as(real.glia_side, replies.glia)) == Both(
        f"@{user}:localhost", f"@{user}:localhost"
    )
    wrong = real.compare(lambda s: login(s, shared_secret_login(user, token_for(f"@{user}:localhost", "other"))))
    assert wrong.native.status == 403
    # A valid token for a user who does not exist: the module asks the homeserver
    # (get_userinfo_by_id, through the bridge on the glia side) and refuses.
    ghost = fresh("ghost")
    absent = real.compare(lambda s: login(s, shared_secret_login(ghost, token_for(f"@{ghost}:localhost"))))
    assert absent.native.status == 403


# -- synapse-domain-rule-checker ----------------------------------------------------------------


def test_an_invite_into_a_new_private_room_is_allowed(real: RealWorld) -> None:
    rooms = real.room_of("alice")
    real.compare(lambda s: s.user("bob").whoami())
    replies = real.compare(lambda s: s.user("alice").invite(rooms[s], s.mxid("bob")))
    assert replies.native.status == 200


def test_an_invite_into_a_room_that_is_no_longer_new_is_refused(real: RealWorld) -> None:
    """`can_only_invite_during_room_creation`: the module reads the room's state (its create
    event and memberships) from the homeserver."""
    rooms = real.room_of("alice", preset="public_chat")
    for side in real.sides:
        side.user("carol")
        assert side.user("bob").join(rooms[side]).status == 200
    replies = real.compare(lambda s: s.user("alice").invite(rooms[s], s.mxid("carol")))
    assert (replies.native.status, replies.native.errcode) == (403, "M_FORBIDDEN")


def test_an_invite_into_a_published_room_is_refused_for_a_prevented_domain(real: RealWorld) -> None:
    """The module asks the homeserver whether the room is in the public room list."""
    rooms = real.room_of("alice", visibility="public", preset="public_chat")
    for side in real.sides:
        side.user("dave")
    replies = real.compare(lambda s: s.user("alice").invite(rooms[s], s.mxid("dave")))
    assert (replies.native.status, replies.native.errcode) == (403, "M_FORBIDDEN")


# -- synapse-http-antispam ----------------------------------------------------------------------


def test_the_antispam_server_refuses_a_spammers_message_as_natively(real: RealWorld) -> None:
    rooms = real.room_of("alice", preset="public_chat")
    for side in real.sides:
        assert side.user("spammy").join(rooms[side]).status == 200
    refused = real.compare(lambda s: s.user("spammy").send_text(rooms[s], "buy now"))
    assert (refused.native.status, refused.native.errcode) == (403, "M_FORBIDDEN")
    allowed = real.compare(lambda s: s.user("alice").send_text(rooms[s], "hello"))
    assert allowed.native.status == 200
    # Both modules sent the server the same kind of body: the event in client format.
    bodies = [r.json() for r in real.draupnir.requests("check_event_for_spam")]
    by_sender = [b["event"] for b in bodies if b["event"]["sender"] == SPAMMER]
    assert len(by_sender) >= 2 and {tuple(sorted(e)) for e in by_sender[-2:]} == {tuple(sorted(by_sender[-1]))}


def test_the_hosted_modules_run_in_glias_supervised_hosts(real: RealWorld) -> None:
    for name in ("ldap", "shared_secret", "domain_rules", "http_antispam"):
        info = module_info(real.glia.url, name)
        assert info["state"] == "running", info
    assert module_info(real.glia.url, "shared_secret")["auth_checkers"] == [
        {"login_type": "com.devture.shared_secret_auth", "fields": ["token"]}
    ]
