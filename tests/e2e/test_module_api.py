"""The `ModuleApi` out of process: one module (`oracle/api_probe.py`) calls each method the
bridge serves (docs/module-api.md, "bridge"), natively in a real Synapse and hosted by glia
behind another, and both must return (or raise) the same: the same values, the same result
types (`tuple`, `immutabledict`, `UserIpAndAgent`, events), the same exceptions. Ids each
homeserver makes itself (room ids, tokens, timestamps) are compared by kind only.

Both homeservers are named `localhost`; they do not federate.
"""

from __future__ import annotations

import email
import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from glia_python_host import api_table

from differential import Both, Side
from harness import Glia, Synapse, bridge_module, free_port, http_request
from hosting import ORACLE, bridge_module_api, python_path_env, python_section

PROBE = "/_synapse/client/api_probe"
NOTIF_FROM = "Probe <noreply@localhost>"
MODULE = {"module": "api_probe.ApiProbe", "config": {}}


class SmtpFake:
    """A minimal SMTP server on 127.0.0.1 keeping the messages it is sent (no TLS offered,
    which Synapse accepts unless `require_transport_security`)."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        messages = self.messages

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 localhost ESMTP fake\r\n")
                lines: list[bytes] | None = None
                for raw in self.rfile:
                    line = raw.rstrip(b"\r\n")
                    if lines is not None:
                        if line == b".":
                            messages.append(email.message_from_bytes(b"\r\n".join(lines)))
                            lines = None
                            self.wfile.write(b"250 OK\r\n")
                        else:
                            lines.append(line[1:] if line.startswith(b"..") else line)
                        continue
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        self.wfile.write(b"250-localhost\r\n250 8BITMIME\r\n")
                    elif verb == b"DATA":
                        lines = []
                        self.wfile.write(b"354 go ahead\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:  # HELO, MAIL, RCPT, RSET, NOOP
                        self.wfile.write(b"250 OK\r\n")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def email_config(self) -> dict[str, Any]:
        """Synapse's `email:` section sending through this server."""
        port = self._server.server_address[1]
        return {"smtp_host": "127.0.0.1", "smtp_port": port, "notif_from": NOTIF_FROM, "enable_tls": False}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Probed:
    """The two homeservers with the probe module, and glia."""

    native: Side
    glia_side: Side
    glia: Glia
    #: The SMTP server each side sends its mail to.
    mail: Both[SmtpFake]
    #: The calls made on the glia side so far (every bridge entry must be, by the last test).
    called: set[str] = field(default_factory=set)

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.native, self.glia_side

    def call(self, side: Side, call: str, **request: Any) -> dict[str, Any]:
        """One `ModuleApi` call made by the module on `side`: what it returned or raised."""
        if side is self.glia_side:
            self.called.add(call)
        status, _, body = http_request("POST", f"{side.synapse.url}{PROBE}", {"call": call, **request}, timeout=60)
        assert status == 200, (side.label, status, body, side.log_tail(), self.glia.process.tail())
        return dict(json.loads(body))

    def both(self, call: str, per_side: Any = None, **request: Any) -> dict[str, Any]:
        """The call on both sides (`per_side(side)` gives side-specific args); asserts the
        answers are the same and returns it."""
        answers = []
        for side in self.sides:
            extra = per_side(side) if per_side is not None else {}
            args = {**request.get("args", {}), **extra}
            answers.append(self.call(side, call, **{**request, "args": args}))
        assert answers[0] == answers[1], (call, answers, self.glia_side.log_tail(), self.glia.process.tail())
        return answers[0]

    def room(self, owner: str, **body: Any) -> Both[str]:
        def create(side: Side) -> str:
            reply = side.user(owner).create_room(**body)
            assert reply.status == 200, (side.label, reply)
            return str(reply.body["room_id"])

        return Both(create(self.native), create(self.glia_side))


@pytest.fixture(scope="module")
def probed(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    workdir = tmp_path_factory.mktemp("module-api")
    env = python_path_env(ORACLE)
    mail = Both(SmtpFake(), SmtpFake())
    started: list[Any] = [mail.native, mail.glia]
    try:
        module_api_port, glia_port = free_port(), free_port()
        config = {
            "listen": f"127.0.0.1:{glia_port}",
            "auth_token": "e2e-glia-token",
            "python": python_section("localhost", module_api_port),
            "modules": [{**MODULE, "name": "probe", "timeout": "30s"}],
        }
        (workdir / "glia").mkdir()
        glia = Glia.start(glia_bin, workdir / "glia", config, glia_port, env=env)
        started.append(glia)
        native = Synapse.start(workdir / "native", [MODULE], env=env, overrides={"email": mail.native.email_config})
        started.append(native)
        bridge = bridge_module(glia.url, timeout=40, module_api=bridge_module_api(module_api_port))
        bridge["config"]["web_resource_paths"] = [PROBE]
        via_glia = Synapse.start(workdir / "glia-synapse", [bridge], overrides={"email": mail.glia.email_config})
        started.append(via_glia)
    except BaseException:
        for thing in reversed(started):
            thing.stop()
        raise
    yield Probed(Side("native", native, "localhost"), Side("glia", via_glia, "localhost"), glia, mail)
    for thing in reversed(started):
        thing.stop()


def kind(answer: dict[str, Any]) -> tuple[Any, ...]:
    """An answer's type and, for a list or tuple, its length: for values each homeserver makes."""
    value = answer.get("value")
    return answer.get("type"), answer.get("raised"), len(value) if isinstance(value, list) else None


def test_set_displayname_from_a_module_sets_the_profile_as_natively(probed: Probed) -> None:
    """The call a hosted auth checker could not make (issue 24): `set_displayname` with
    Synapse's `UserID`, then `get_profile_for_user` reads it back."""
    for side in probed.sides:
        side.user("dora")
    done = probed.both(
        "set_displayname", args={"user_id": "@dora:localhost", "new_displayname": "Dora D."}, user_ids=["user_id"]
    )
    assert done == {"type": "NoneType", "value": None}
    profile = probed.both("get_profile_for_user", args={"localpart": "dora"})
    assert profile["value"]["display_name"] == "Dora D."
    # A plain string where Synapse wants a UserID fails the same way on both.
    wrong = probed.both("set_displayname", args={"user_id": "@dora:localhost", "new_displayname": "x"})
    assert "raised" in wrong


def test_room_actions_send_the_same_events(probed: Probed) -> None:
    for side in probed.sides:
        side.user("bob")
    rooms = probed.room("alice")
    invite = probed.both(
        "update_room_membership",
        lambda s: {"room_id": rooms[s]},
        args={"sender": "@alice:localhost", "target": "@bob:localhost", "new_membership": "invite"},
    )
    assert invite["value"]["event"]["content"]["membership"] == "invite"
    notice = {"type": "m.room.message", "sender": "@alice:localhost", "content": {"msgtype": "m.notice", "body": "hi"}}
    sent = probed.both("create_and_send_event_into_room", lambda s: {"event_dict": {**notice, "room_id": rooms[s]}})
    assert sent["value"]["event"]["content"]["body"] == "hi"
    not_local = probed.both("create_room", args={"user_id": "@alice:elsewhere.org", "config": {}})
    assert not_local["raised"] == "RuntimeError"
    made = [
        probed.call(side, "create_room", args={"user_id": "@alice:localhost", "config": {}}) for side in probed.sides
    ]
    assert kind(made[0]) == kind(made[1]) == ("tuple", None, 2)
    assert (
        probed.both("get_canonical_room_alias", lambda s: {"room_id": rooms[s]}, room_ids=["room_id"])["value"] is None
    )


def test_the_public_room_list_manager_publishes_and_unpublishes(probed: Probed) -> None:
    rooms = probed.room("alice")
    manager = "public_room_list_manager."
    assert probed.both(manager + "room_is_in_public_room_list", lambda s: {"room_id": rooms[s]})["value"] is False
    probed.both(manager + "add_room_to_public_room_list", lambda s: {"room_id": rooms[s]})
    assert probed.both(manager + "room_is_in_public_room_list", lambda s: {"room_id": rooms[s]})["value"] is True
    probed.both(manager + "remove_room_from_public_room_list", lambda s: {"room_id": rooms[s]})
    assert probed.both(manager + "room_is_in_public_room_list", lambda s: {"room_id": rooms[s]})["value"] is False
    assert probed.both("delete_room", lambda s: {"room_id": rooms[s]}) == {"type": "NoneType", "value": None}


def test_account_data_users_and_tokens(probed: Probed) -> None:
    for side in probed.sides:
        side.user("erin")
    data = "account_data_manager."
    probed.both(
        data + "put_global", args={"user_id": "@erin:localhost", "data_type": "org.example", "new_data": {"a": 1}}
    )
    got = probed.both(data + "get_global", args={"user_id": "@erin:localhost", "data_type": "org.example"})
    assert got == {"type": "immutabledict", "value": {"a": 1}}
    nobody = probed.both(data + "put_global", args={"user_id": "@nobody:localhost", "data_type": "t", "new_data": {}})
    assert nobody["raised"] == "ValueError"
    assert probed.both("check_username", args={"username": "erin"})["raised"] == "SynapseError"
    assert probed.both("check_username", args={"username": "free-name"})["value"] is None
    assert probed.both("register_user", args={"localpart": "made-by-module"})["value"] == "@made-by-module:localhost"
    tokens = [probed.call(side, "create_login_token", args={"user_id": "@erin:localhost"}) for side in probed.sides]
    assert kind(tokens[0]) == kind(tokens[1]) == ("str", None, None)
    seen = [probed.call(side, "get_user_ip_and_agents", args={"user_id": "@erin:localhost"}) for side in probed.sides]
    assert kind(seen[0]) == kind(seen[1]) and seen[0]["type"] == "list"
    probed.both(
        "store_remote_3pid_association",
        args={
            "user_id": "@erin:localhost",
            "medium": "email",
            "address": "erin@example.org",
            "id_server": "id.example.org",
        },
    )
    threepids = probed.both("get_threepids_for_user", args={"user_id": "@erin:localhost"})
    assert threepids["type"] == "list"


def test_push_rules_presence_and_pushes(probed: Probed) -> None:
    for side in probed.sides:
        side.user("fay")
    rule = {"user_id": "@fay:localhost", "scope": "global", "kind": "override", "actions": ["notify"]}
    assert probed.both("set_push_rule_action", args={**rule, "rule_id": ".m.rule.master"})["value"] is None
    assert probed.both("set_push_rule_action", args={**rule, "rule_id": "nope"})["raised"] == "RuleNotFoundException"
    assert probed.both("set_push_rule_action", args={**rule, "rule_id": ".m.rule.master", "scope": "device"})[
        "raised"
    ] == ("RuntimeError")
    bad = probed.both("set_push_rule_action", args={**rule, "rule_id": ".m.rule.master", "actions": ["bogus"]})
    assert bad["raised"] == "InvalidRuleException"
    assert (
        probed.both("set_presence_for_users", args={"users": {"@fay:localhost": ["online", "here"]}})["value"] is None
    )
    assert probed.both("send_local_online_presence_to", args={"users": ["@fay:localhost"]})["value"] is None
    pushed = probed.both(
        "send_http_push_notification", args={"user_id": "@fay:localhost", "device_id": None, "content": {}}
    )
    assert pushed == {"type": "dict", "value": {}}


def test_a_refused_method_raises_not_available_naming_it(probed: Probed) -> None:
    answer = probed.call(probed.glia_side, "run_db_interaction", args={"desc": "x", "func": None})
    assert answer["raised"] == "NotAvailableOutOfProcess" and "run_db_interaction" in answer["message"], answer


def test_send_mail_sends_the_same_mail_through_synapses_smtp_settings(probed: Probed) -> None:
    mail = {"recipient": "someone@example.org", "subject": "Hello", "html": "<p>hi</p>", "text": "hi"}
    assert probed.both("send_mail", args=mail) == {"type": "NoneType", "value": None}

    def sent(side: Side) -> list[tuple[Any, ...]]:
        messages = probed.mail[side].messages
        return [
            (m["From"], m["To"], m["Subject"], [p.get_payload(decode=True) for p in m.walk() if not p.is_multipart()])
            for m in messages
        ]

    assert sent(probed.native) == sent(probed.glia_side)
    assert sent(probed.native) == [("Probe <noreply@localhost>", "someone@example.org", "Hello", [b"hi", b"<p>hi</p>"])]


def test_users_devices_tokens_and_state_as_natively(probed: Probed) -> None:
    for side in probed.sides:
        side.user("gus")
    gus = {"user_id": "@gus:localhost"}
    assert probed.both("check_user_exists", args={"user_id": "@GUS:localhost"})["value"] == "@gus:localhost"
    assert probed.both("is_user_admin", args=gus)["value"] is False
    probed.both("set_user_admin", args={**gus, "admin": True})
    assert probed.both("is_user_admin", args=gus)["value"] is True
    info = [probed.call(side, "get_userinfo_by_id", args=gus) for side in probed.sides]
    assert (
        info[0]["type"] == info[1]["type"] == "UserInfo"
        and info[0]["value"]["is_admin"] == info[1]["value"]["is_admin"]
    )
    device = [probed.call(side, "register_device", args={**gus, "device_id": "PROBE"}) for side in probed.sides]
    assert kind(device[0]) == kind(device[1]) == ("tuple", None, 4)
    registered = [probed.call(side, "register", args={"localpart": "hal"}) for side in probed.sides]
    assert kind(registered[0]) == kind(registered[1]) == ("tuple", None, 2)
    tokens = Both(registered[0]["value"][1], registered[1]["value"][1])
    # Synapse 1.163.2's own invalidate_access_token fails (it calls `.get` on the Rust
    # `Requester`): the hosted module gets the very same AttributeError.
    invalidated = probed.both("invalidate_access_token", lambda s: {"access_token": tokens[s]})
    assert invalidated["raised"] == "AttributeError", invalidated
    linked = {"auth_provider_id": "oidc", "remote_user_id": "gus-1", "registered_user_id": "@gus:localhost"}
    assert probed.both("record_user_external_id", args=linked)["value"] is None
    again = probed.both("record_user_external_id", args={**linked, "registered_user_id": "@hal:localhost"})
    assert again.get("raised") == "ExternalIDReuseException", again
    assert probed.both("get_monthly_active_users_by_service")["type"] == "list"
    rooms = probed.room("gus", room_alias_name="probe-room")
    state = probed.both("get_room_state", lambda s: {"room_id": rooms[s], "event_filter": [["m.room.create", ""]]})
    assert list(state["value"]) == ["['m.room.create', '']"]
    events = probed.both(
        "get_state_events_in_room", lambda s: {"room_id": rooms[s], "types": [["m.room.member", "@gus:localhost"]]}
    )
    assert events["type"] == "dict_values" and events["value"][0]["event"]["content"]["membership"] == "join"
    found = [
        probed.call(side, "lookup_room_alias", args={"room_alias": "#probe-room:localhost"}) for side in probed.sides
    ]
    assert kind(found[0]) == kind(found[1]) == ("tuple", None, 2)
    assert [f["value"][0] for f in found] == [rooms.native, rooms.glia]
    alias = probed.both("get_canonical_room_alias", lambda s: {"room_id": rooms[s]}, room_ids=["room_id"])
    assert alias == {"type": "RoomAlias", "value": "#probe-room:localhost"}


def test_every_call_the_bridge_serves_was_made_on_both_sides(probed: Probed) -> None:
    """The tests above between them call each `bridge` entry of the table (runs last)."""
    assert sorted(api_table.names(api_table.BRIDGE) - probed.called) == []
