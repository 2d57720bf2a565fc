"""The Python host without a homeserver: loading, the ModuleApi, arguments and answers."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import run

from glia_python_host import answers, check, loader
from glia_python_host.channel import NotAvailableOutOfProcess
from glia_python_host.decode import decode_args, decode_event
from glia_python_host.hosted import HostedModule
from glia_python_host.settings import HomeserverSettings

SETTINGS = HomeserverSettings.from_json({"server_name": "example.com"})

MODULE = """
from synapse.api.errors import Codes, SynapseError
from synapse.module_api import NOT_SPAM
from synapse.module_api.errors import ConfigError


class Sample:
    def __init__(self, config, api):
        self.api = api
        self.seen = []
        api.register_spam_checker_callbacks(
            user_may_invite=self.user_may_invite,
            check_event_for_spam=self.check_event_for_spam,
            user_may_create_room=self.user_may_create_room,
        )
        api.register_third_party_rules_callbacks(
            on_create_room=self.on_create_room, check_event_allowed=self.check_event_allowed
        )
        api.register_password_auth_provider_callbacks(auth_checkers={("org.example.login", ("token",)): self.auth})

    @staticmethod
    def parse_config(config):
        if not isinstance(config.get("rules", []), list):
            raise ConfigError("rules must be a list", ("rules",))
        return config

    async def user_may_invite(self, inviter, invitee, room_id):
        if inviter.startswith("@evil"):
            return Codes.FORBIDDEN
        if inviter.startswith("@slow"):
            raise SynapseError(429, "slow down", Codes.LIMIT_EXCEEDED, {"retry_after_ms": 1500})
        if inviter.startswith("@copy"):
            return "".join(["NOT_", "SPAM"])
        await self.api.sleep(0.001)
        return NOT_SPAM

    async def check_event_for_spam(self, event):
        self.seen.append(event)
        if event.internal_metadata.soft_failed:
            return (Codes.FORBIDDEN, {"event_id": event.event_id})
        return NOT_SPAM

    async def user_may_create_room(self, user_id):
        return user_id.startswith("@ok")

    async def on_create_room(self, requester, request_content, is_requester_admin):
        if requester.user.localpart == "refused":
            raise SynapseError(409, "taken", "ORG_EXAMPLE_TAKEN")
        request_content["name"] = "named by " + requester.user.to_string()

    async def check_event_allowed(self, event, state_events):
        return True, None

    async def auth(self, username, login_type, login_dict):
        if login_dict.get("token") == "good":
            return self.api.get_qualified_user_id(username), None
        if login_dict.get("token") == "with callback":
            return self.api.get_qualified_user_id(username), self.logged_in
        if login_dict.get("token") == "with a failing callback":
            return self.api.get_qualified_user_id(username), self.fails
        return None

    async def logged_in(self, login_result):
        self.seen.append(("logged in", login_result))

    async def fails(self, login_result):
        raise RuntimeError("not today")
"""


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> HostedModule:
    directory = tmp_path_factory.mktemp("modules")
    (directory / "sample_module.py").write_text(textwrap.dedent(MODULE))
    sys.path.insert(0, str(directory))
    return HostedModule("sample_module.Sample", {"rules": []}, SETTINGS)


def invoke(module: HostedModule, callback: str, args: dict[str, Any]) -> dict[str, Any]:
    reply = run(module.invoke({"request_id": "r", "deadline_ms": 0, "callback": callback, "args": args}))
    assert reply["request_id"] == "r"
    return reply["result"]  # type: ignore[no-any-return]


def event(**more: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": "@a:example.com",
        "room_id": "!r:example.com",
        "content": {"body": "hi"},
        "room_version": "10",
        **more,
    }


def test_the_module_registers_through_synapses_own_register_methods(sample: HostedModule) -> None:
    assert sample.describe() == {
        "callbacks": [
            "check_event_for_spam",
            "user_may_invite",
            "user_may_create_room",
            "check_event_allowed",
            "on_create_room",
            "post_login",
        ],
        "auth_checkers": [{"login_type": "org.example.login", "fields": ["token"]}],
        "web_resources": [],
        "web_resource_subtrees": [],
    }


def test_answers_are_synapses_values_on_the_wire(sample: HostedModule) -> None:
    args = {"invitee": "@b:example.com", "room_id": "!r:example.com"}
    assert invoke(sample, "user_may_invite", {"inviter": "@ok:example.com", **args}) == {
        "answer": {"callback": "user_may_invite", "answer": "NOT_SPAM"}
    }
    assert invoke(sample, "user_may_invite", {"inviter": "@evil:example.com", **args})["answer"]["answer"] == {
        "errcode": "M_FORBIDDEN"
    }
    # Compared by identity, as Synapse does: an equal string made at run time is not NOT_SPAM.
    assert invoke(sample, "user_may_invite", {"inviter": "@copy:example.com", **args})["answer"]["answer"] == {
        "message": "NOT_SPAM"
    }
    # The single-argument form of user_may_create_room, called as Synapse calls it.
    assert invoke(sample, "user_may_create_room", {"user_id": "@ok:x", "room_config": {}})["answer"]["answer"] is True


def test_a_synapse_error_is_raised_to_the_client_as_is(sample: HostedModule) -> None:
    result = invoke(sample, "user_may_invite", {"inviter": "@slow:x", "invitee": "@b:x", "room_id": "!r:x"})
    assert result["error"]["synapse_error"] == {
        "status": 429,
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "slow down",
        "fields": {"retry_after_ms": 1500},
    }
    assert result["error"]["kind"] == "failed"


def test_on_create_room_edits_come_back_and_its_synapse_error_is_a_deny(sample: HostedModule) -> None:
    content = {"preset": "private_chat"}
    edited = invoke(
        sample,
        "on_create_room",
        {"requester": {"user_id": "@a:example.com"}, "request_content": content, "is_requester_admin": False},
    )
    assert edited["answer"]["answer"] == {
        "request_content": {"preset": "private_chat", "name": "named by @a:example.com"}
    }
    refused = invoke(
        sample,
        "on_create_room",
        {"requester": {"user_id": "@refused:example.com"}, "request_content": {}, "is_requester_admin": False},
    )
    assert refused["answer"]["answer"] == {"deny": {"status": 409, "errcode": "ORG_EXAMPLE_TAKEN", "error": "taken"}}


def test_events_are_synapses_objects_with_their_room_version_and_metadata(sample: HostedModule) -> None:
    result = invoke(sample, "check_event_for_spam", {"event": event(internal_metadata={"soft_failed": True})})
    seen = sample.instance.seen[-1]
    assert seen.room_version.identifier == "10"
    assert seen.internal_metadata.soft_failed is True
    assert result["answer"]["answer"] == {"errcode": "M_FORBIDDEN", "fields": {"event_id": seen.event_id}}


def test_a_complete_pdu_keeps_its_event_id() -> None:
    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
    from synapse.events import make_event_from_dict

    from glia_synapse.convert import encode_event

    pdu = {
        "type": "m.room.message",
        "sender": "@a:example.com",
        "room_id": "!r:example.com",
        "content": {"body": "hi"},
        "origin_server_ts": 1,
        "prev_events": ["$p"],
        "auth_events": ["$a"],
        "depth": 3,
        "hashes": {"sha256": "abc"},
        "signatures": {},
        "unsigned": {"age_ts": 5},
    }
    original = make_event_from_dict(pdu, KNOWN_ROOM_VERSIONS["10"], {"txn_id": "t"})
    original.internal_metadata.outlier = True  # as Synapse sets it, outside the metadata's dict
    rebuilt = decode_event(json.loads(json.dumps(encode_event(original))))
    assert rebuilt.event_id == original.event_id
    assert rebuilt.internal_metadata.outlier and rebuilt.internal_metadata.txn_id == "t"
    assert rebuilt.get_dict() == original.get_dict()


def test_a_requester_keeps_the_id_of_the_application_service_acting() -> None:
    from synapse.types import create_requester

    from glia_synapse.convert import encode_requester

    acting = {"user_id": "@bot:example.com", "device_id": None, "app_service_id": "bridge"}
    decoded, _ = decode_args(["requester"], {"requester": acting})
    assert decoded["requester"].app_service_id == "bridge"
    assert decoded["requester"].user.to_string() == "@bot:example.com"
    # Round trip through the bridge's encoding.
    assert encode_requester(decoded["requester"])["app_service_id"] == "bridge"
    plain_user, _ = decode_args(["requester"], {"requester": encode_requester(create_requester("@a:example.com"))})
    assert plain_user["requester"].app_service_id is None


def test_state_maps_are_keyed_by_type_and_state_key() -> None:
    state = [event(type="m.room.create", state_key="", content={}), event(type="m.room.member", state_key="@b:x")]
    decoded, _ = decode_args(["state_events"], {"state_events": state})
    assert sorted(decoded["state_events"]) == [("m.room.create", ""), ("m.room.member", "@b:x")]


def test_auth_checkers_are_served_by_login_type(sample: HostedModule) -> None:
    args = {"username": "alice", "login_type": "org.example.login", "login_dict": {"token": "good"}}
    assert invoke(sample, "check_auth", args)["answer"]["answer"] == {"user_id": "@alice:example.com"}
    args["login_dict"] = {"token": "bad"}
    assert invoke(sample, "check_auth", args)["answer"]["answer"] is None


def test_a_post_login_callback_is_kept_under_a_handle_and_awaited_with_the_login_result(sample: HostedModule) -> None:
    args = {"username": "alice", "login_type": "org.example.login", "login_dict": {"token": "with callback"}}
    answer = invoke(sample, "check_auth", args)["answer"]["answer"]
    assert answer["user_id"] == "@alice:example.com" and len(answer["post_login"]) == 32
    login_result = {"user_id": "@alice:example.com", "access_token": "t", "home_server": "example.com"}
    told = {"module": "m", "handle": answer["post_login"], "login_result": login_result}
    assert invoke(sample, "post_login", told) == {"answer": {"callback": "post_login", "answer": None}}
    assert sample.instance.seen[-1] == ("logged in", login_result)
    # Taken once: the same handle again calls nothing.
    before = len(sample.instance.seen)
    assert invoke(sample, "post_login", told)["answer"]["answer"] is None
    assert len(sample.instance.seen) == before
    # What the callback raises is the module's failure (the login fails, as in Synapse).
    args["login_dict"] = {"token": "with a failing callback"}
    handle = invoke(sample, "check_auth", args)["answer"]["answer"]["post_login"]
    failed = invoke(sample, "post_login", {**told, "handle": handle})
    assert failed["error"] == {"kind": "failed", "message": "RuntimeError: not today"}


def test_a_malformed_invocation_is_a_failed_error(sample: HostedModule) -> None:
    assert invoke(sample, "user_may_invite", {"inviter": "@a:x"})["error"]["kind"] == "failed"
    assert invoke(sample, "on_new_event", {})["error"]["message"] == "the module does not serve on_new_event"
    broken = invoke(sample, "check_event_for_spam", {"event": event(room_version="nope")})
    assert "unknown room version" in broken["error"]["message"]


def test_what_needs_synapses_process_raises_a_clear_error_at_the_call(sample: HostedModule) -> None:
    api = sample.api
    with pytest.raises(NotAvailableOutOfProcess, match=r"ModuleApi\.run_db_interaction is not available"):
        api.run_db_interaction("x", lambda txn: None)
    with pytest.raises(NotAvailableOutOfProcess, match=r"api\._store\.get_user_by_id\(\)"):
        api._store.get_user_by_id("@a:x")
    with pytest.raises(NotAvailableOutOfProcess, match=r"api\._hs\.get_task_scheduler\(\)"):
        api._hs.get_task_scheduler()
    # Asking the homeserver needs the bridge's channel, which this host was not given.
    with pytest.raises(NotAvailableOutOfProcess, match=r"python\.module_api"):
        run(api.get_userinfo_by_id("@a:example.com"))


def test_the_properties_modules_read_come_from_glias_settings(sample: HostedModule) -> None:
    api = sample.api
    assert (api.server_name, api.public_baseurl, api.worker_name) == ("example.com", "https://example.com/", None)
    assert api.get_qualified_user_id("alice") == "@alice:example.com"
    assert api.is_mine("@alice:example.com") and not api.is_mine("@alice:elsewhere")
    assert type(api.http_client).__name__ == "SimpleHttpClient"


def test_synapses_registration_rules_hold(tmp_path: Path) -> None:
    (tmp_path / "half_router.py").write_text(
        "class Half:\n"
        "    def __init__(self, config, api):\n"
        "        async def states(updates):\n"
        "            return {}\n"
        "        api.register_presence_router_callbacks(get_users_for_states=states)\n"
    )
    sys.path.insert(0, str(tmp_path))
    with pytest.raises(loader.LoadError, match="neither or both"):
        HostedModule("half_router.Half", {}, SETTINGS)


def test_config_errors_name_the_key_as_synapse_does(sample: HostedModule) -> None:
    result = check.check(
        {
            "modules": [
                {"index": 0, "module": "sample_module.Sample", "config": {"rules": "no"}},
                {"index": 1, "module": "no_such_module.Thing", "config": {}},
                {"index": 2, "module": "sample_module.Sample", "config": {}},
            ]
        }
    )
    assert result["errors"] == [
        {
            "index": 0,
            "path": ["config", "rules"],
            "message": "Failed to parse config for module 'sample_module.Sample': rules must be a list",
        },
        {
            "index": 1,
            "path": ["module"],
            "message": "cannot load no_such_module.Thing: ModuleNotFoundError: No module named 'no_such_module'",
        },
    ]


def test_the_spam_answers_of_every_shape() -> None:
    from synapse.api.errors import Codes
    from synapse.module_api import NOT_SPAM

    assert answers.spam_answer(NOT_SPAM) == "NOT_SPAM"
    assert answers.spam_answer(False) is False
    assert answers.spam_answer((Codes.FORBIDDEN, {"k": 1})) == {"errcode": "M_FORBIDDEN", "fields": {"k": 1}}
    assert answers.spam_answer("no links") == {"message": "no links"}
    assert answers.spam_answer(None) is None
