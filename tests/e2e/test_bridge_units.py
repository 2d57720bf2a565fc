"""The bridge's pieces without a homeserver: config, argument encoding, reply mapping,
failure modes, discovery and trace headers. Fast; part of the same pytest run."""

from __future__ import annotations

import asyncio
import base64
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes as unquote

import pytest
from synapse.api.presence import UserPresenceState
from synapse.events import make_event_from_dict
from synapse.module_api import NOT_SPAM, PRESENCE_ALL_USERS
from synapse.module_api.errors import Codes, ConfigError, SynapseError
from synapse.spam_checker_api import RegistrationBehaviour
from twisted.internet import defer
from twisted.internet.task import Clock

from glia_synapse import once
from glia_synapse.bridge import Discovery, GliaBridge, forwarding_rules, select_callbacks, select_login_types
from glia_synapse.catalogue import BACKGROUND, BY_NAME, CALLBACKS, EVERY, WORK, bind_post_login
from glia_synapse.client import GliaClient
from glia_synapse.config import parse_config
from glia_synapse.convert import encode_args
from glia_synapse.errors import GliaCallbackFailed, GliaFailure, GliaModuleFailed
from glia_synapse.replies import PostLoginHandle, check_error, errcode
from glia_synapse.reply_cache import Generations, ReplyCache
from glia_synapse.tracing import traceparent_from_ids
from glia_synapse.web import GLIA, NO_RESOURCE, UNRECOGNIZED, WebRoutes

UNUSED_URL = "http://127.0.0.1:9"  # discard port: connection refused at once


# -- config -------------------------------------------------------------------------------


def test_config_defaults_and_per_callback_overrides() -> None:
    config = parse_config(
        {
            "glia_url": "http://glia:8787/",
            "timeout": {"default": 3, "check_event_for_spam": 0.5},
            "fail_open": {"user_may_invite": True, "check_event_for_spam": False},
        }
    )
    assert config.glia_url == "http://glia:8787"
    assert (config.timeout_for("check_event_for_spam"), config.timeout_for("user_may_invite")) == (0.5, 3.0)
    assert config.fails_open("user_may_invite") and not config.fails_open("check_event_for_spam")
    assert config.fails_open("is_user_expired") and not config.fails_open("user_may_create_room")
    everything_open = parse_config({"glia_url": "http://g", "fail_open": True})
    assert everything_open.fails_open("user_may_create_room")
    assert not everything_open.fails_open("on_legacy_renew")  # no neutral value: always closed


def test_several_coordinators_and_a_unix_socket() -> None:
    config = parse_config({"glia_url": ["unix:/run/glia/glia.sock", "http://a:8787", "https://b/glia/"]})
    unix, a, b = config.glia_urls
    assert (unix.scheme, unix.path, unix.host_header) == ("unix", "/run/glia/glia.sock", b"localhost")
    assert (a.host, a.port, a.prefix, a.host_header) == ("a", 8787, "", b"a:8787")
    assert (b.scheme, b.port, b.prefix, b.host_header) == ("https", 443, "/glia", b"b")
    assert config.transport == "lean" and config.attempt_timeout is None and config.connect_timeout == 1.0
    assert config.glia_url == "unix:/run/glia/glia.sock, http://a:8787, https://b/glia"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({}, ("glia_url",)),
        ({"glia_url": "ftp://x"}, ("glia_url",)),
        ({"glia_url": "http://g", "nope": 1}, ("nope",)),
        ({"glia_url": "http://g", "callbacks": ["user_may_invite", "bogus"]}, ("callbacks", "1")),
        ({"glia_url": "http://g", "callbacks": ["get_users_for_states"]}, ("callbacks",)),
        ({"glia_url": "http://g", "callbacks": ["min_batch_size"]}, ("callbacks",)),
        ({"glia_url": "http://g", "media_bytes": -1}, ("media_bytes",)),
        ({"glia_url": "http://g", "timeout": 0}, ("timeout",)),
        ({"glia_url": "http://g", "fail_open": {"user_may_invite": "yes"}}, ("fail_open", "user_may_invite")),
        ({"glia_url": "http://g", "auth_token": "a", "auth_token_path": "/x"}, ("auth_token_path",)),
        ({"glia_url": "http://g", "auth_token_path": "/nonexistent/token"}, ("auth_token_path",)),
        ({"glia_url": "http://g", "web_resource_paths": ["/_matrix/client/x"]}, ("web_resource_paths", "0")),
        ({"glia_url": []}, ("glia_url",)),
        ({"glia_url": ["http://g", "unix:relative.sock"]}, ("glia_url", "1")),
        ({"glia_url": ["http://g", "http://g/"]}, ("glia_url", "1")),
        ({"glia_url": "http://g", "transport": "carrier-pigeon"}, ("transport",)),
        ({"glia_url": "http://g", "attempt_timeout": 0}, ("attempt_timeout",)),
        ({"glia_url": "http://g", "connect_timeout": -1}, ("connect_timeout",)),
        ({"glia_url": "http://g", "web_resource_prefixes": "/_synapse/client"}, ("web_resource_prefixes",)),
        ({"glia_url": "http://g", "web_resource_prefixes": ["/_synapse"]}, ("web_resource_prefixes", "0")),
        ({"glia_url": "http://g", "web_resource_prefixes": ["/"]}, ("web_resource_prefixes", "0")),
        ({"glia_url": "http://g", "web_resource_prefixes": ["/_synapse/clientele"]}, ("web_resource_prefixes", "0")),
        # Synapse's own resources: a prefix there would replace them
        (
            {"glia_url": "http://g", "web_resource_prefixes": ["/_synapse/client/x", "/_synapse/client/pick_idp"]},
            ("web_resource_prefixes", "1"),
        ),
        (
            {"glia_url": "http://g", "web_resource_prefixes": ["/_synapse/client/password_reset/email"]},
            ("web_resource_prefixes", "0"),
        ),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, Any], path: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert tuple(error.value.path or ()) == path


def test_web_resource_prefixes_default_to_synapse_client_and_lose_a_trailing_slash() -> None:
    assert parse_config({"glia_url": "http://g"}).web_resource_prefixes == ("/_synapse/client",)
    configured = parse_config(
        {"glia_url": "http://g", "web_resource_prefixes": ["/_synapse/client/", "/_synapse/client/x/"]}
    )
    assert configured.web_resource_prefixes == ("/_synapse/client", "/_synapse/client/x")
    assert parse_config({"glia_url": "http://g", "web_resource_prefixes": []}).web_resource_prefixes == ()


def test_auth_token_path_is_read(tmp_path: Any) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    assert parse_config({"glia_url": "http://g", "auth_token_path": str(tmp_path / "token")}).auth_token == "s3cret"


# -- arguments ----------------------------------------------------------------------------


@dataclass
class FakeEvent:
    """Enough of Synapse's event: a v12 create event's dict has no room or event id."""

    pdu: dict[str, Any]
    event_id: str = "$ev"
    room_id: str = "!room"

    def get_dict(self) -> dict[str, Any]:
        return dict(self.pdu)


def test_events_and_state_are_encoded_as_pdu_dicts() -> None:
    create = FakeEvent({"type": "m.room.create", "sender": "@a:hs", "content": {}, "state_key": ""})
    message = FakeEvent({"type": "m.room.message", "sender": "@a:hs", "room_id": "!r", "content": {"body": "x"}})
    body = encode_args(("event", "state_events"), {"event": message, "state_events": {("m.room.create", ""): create}})
    assert body["event"] == {**message.pdu, "event_id": "$ev"}
    assert body["state_events"] == [{**create.pdu, "event_id": "$ev", "room_id": "!room"}]


@dataclass
class FileInfo:
    server_name: str | None = None
    file_id: str = "abc"
    url_cache: bool = False
    thumbnail: Any = None


@dataclass
class FileWrapper:
    """Synapse's `ReadableFileWrapper`: reads its file in 16 KiB chunks."""

    path: str

    async def write_chunks_to(self, callback: Any) -> None:
        with open(self.path, "rb") as file:
            while chunk := file.read(2**14):
                callback(chunk)


def test_the_file_wrapper_is_sent_as_its_first_bytes(tmp_path: Any) -> None:
    spec = BY_NAME["check_media_file_for_spam"]
    body = encode_args(spec.params, {"file_wrapper": object(), "file_info": FileInfo()}, spec.skip)
    assert body == {"file_info": {"server_name": None, "file_id": "abc", "url_cache": False, "thumbnail": None}}
    content = bytes(range(256)) * 200  # 51200 bytes: four chunks
    (tmp_path / "f").write_bytes(content)
    made, api = bridge({"decision": "allow"}, media_bytes=20000)
    check = api.registered["register_spam_checker_callbacks"]["check_media_file_for_spam"]
    assert asyncio.run(check(FileWrapper(str(tmp_path / "f")), FileInfo())) is NOT_SPAM
    sent = made._client.calls[0][1]["file"]
    assert sent["length"] == len(content) and sent["truncated"] is True
    assert base64.b64decode(sent["content"]) == content[:20000]
    made, api = bridge({"decision": "allow"}, media_bytes=0)
    check = api.registered["register_spam_checker_callbacks"]["check_media_file_for_spam"]
    asyncio.run(check(FileWrapper(str(tmp_path / "f")), FileInfo()))
    assert "file" not in made._client.calls[0][1]


# -- replies ------------------------------------------------------------------------------


def decode(callback: str, reply: dict[str, Any], args: dict[str, Any] | None = None) -> Any:
    return BY_NAME[callback].reply.decode(check_error(reply), args or {})


def test_spam_replies() -> None:
    assert decode("user_may_invite", {"decision": "allow"}) is NOT_SPAM  # Synapse tests identity
    code, fields = decode("check_event_for_spam", {"decision": "deny", "errcode": "M_FORBIDDEN", "fields": {"a": 1}})
    assert code is Codes.FORBIDDEN and fields == {"a": 1}
    # The deprecated plain string: Synapse shows the client a string it is handed.
    message = decode(
        "check_event_for_spam",
        {"decision": "deny", "errcode": "M_FORBIDDEN", "error": "No links", "fields": {}, "module_message": True},
    )
    assert message == "No links" and not isinstance(message, Codes)
    assert decode("user_may_send_state_event", {"decision": "deny", "errcode": "M_LIMIT_EXCEEDED"}) is (
        Codes.LIMIT_EXCEEDED
    )


def test_errcodes_outside_synapses_enum_are_still_codes() -> None:
    foreign = errcode("ORG_EXAMPLE_SPAM")
    assert isinstance(foreign, Codes) and foreign == "ORG_EXAMPLE_SPAM"
    error = SynapseError(403, "no", foreign, {"x": 1})
    from synapse.util.json import json_encoder

    assert json_encoder.encode(error.error_dict(None)) == '{"error":"no","errcode":"ORG_EXAMPLE_SPAM","x":1}'


def test_yes_no_truthy_and_value_replies() -> None:
    assert decode("check_can_shutdown_room", {"decision": "deny", "errcode": "M_FORBIDDEN"}) is False
    assert decode("should_drop_federated_event", {"decision": "deny", "errcode": "M_FORBIDDEN"}) is True
    assert decode("check_registration_for_spam", {"behaviour": "shadow_ban"}) is RegistrationBehaviour.SHADOW_BAN
    assert decode("is_user_expired", {"expired": None}) is None
    assert decode("check_auth", {"user_id": "@u:hs"}) == ("@u:hs", None)
    assert decode("on_legacy_renew", {"value": {"valid": True, "stale": False, "expiry_ts": 5}}) == (True, False, 5)
    with pytest.raises(GliaFailure):
        decode("on_legacy_admin_request", {"value": None})
    assert decode("get_interested_users", {"users": "ALL"}) == PRESENCE_ALL_USERS
    assert decode("get_interested_users", {"users": ["@b:hs"]}) == {"@b:hs"}


def test_an_auth_reply_with_a_post_login_handle_gives_synapse_a_callback_that_sends_the_result_back() -> None:
    reply = {"user_id": "@u:hs", "module": "ldap", "post_login": "42.abc"}
    assert decode("check_auth", reply) == ("@u:hs", PostLoginHandle("ldap", "42.abc"))
    sent: list[tuple[str, dict[str, Any]]] = []

    async def forward(spec: Any, args: Mapping[str, Any]) -> None:
        sent.append((spec.name, dict(args)))

    user_id, callback = bind_post_login(decode("check_3pid_auth", reply), forward)
    assert user_id == "@u:hs" and callable(callback)
    asyncio.run(callback({"user_id": "@u:hs", "access_token": "t", "device_id": "D", "home_server": "hs"}))
    login_result = {"user_id": "@u:hs", "access_token": "t", "device_id": "D", "home_server": "hs"}
    assert sent == [("post_login", {"module": "ldap", "handle": "42.abc", "login_result": login_result})]
    # No handle, or no one: what Synapse gets is unchanged.
    assert bind_post_login(decode("check_auth", {"user_id": "@u:hs"}), forward) == ("@u:hs", None)
    assert bind_post_login(decode("check_auth", {"user_id": None}), forward) is None


def test_presence_replies_reuse_synapses_state_objects() -> None:
    mine = UserPresenceState.default("@bob:hs")
    users = decode(
        "get_users_for_states",
        {"users": {"@alice:hs": [mine.as_dict(), {"user_id": "@carol:hs", "state": "online"}]}},
        {"state_updates": [mine]},
    )
    assert any(state is mine for state in users["@alice:hs"])
    assert {s.user_id for s in users["@alice:hs"]} == {"@bob:hs", "@carol:hs"}


def test_check_event_allowed_replacement_drops_the_keys_the_bridge_added() -> None:
    create = FakeEvent({"type": "m.room.create", "sender": "@a:hs", "content": {}, "state_key": ""})
    replacement = {**create.pdu, "content": {"x": 1}, "event_id": "$ev", "room_id": "!room"}
    assert decode("check_event_allowed", {"decision": "allow", "replacement": replacement}, {"event": create}) == (
        True,
        {**create.pdu, "content": {"x": 1}},
    )
    assert decode("check_event_allowed", {"decision": "deny", "errcode": "M_FORBIDDEN"}) == (False, None)


def test_on_create_room_edits_the_live_request_and_denies_by_raising() -> None:
    live = {"name": "old", "preset": "private_chat"}
    assert (
        decode("on_create_room", {"decision": "allow", "request_content": {"name": "new"}}, {"request_content": live})
        is None
    )
    assert live == {"name": "new"}
    with pytest.raises(SynapseError) as error:
        decode("on_create_room", {"decision": "deny", "errcode": "M_BAD_JSON", "error": "no", "status": 400})
    assert (error.value.code, error.value.errcode) == (400, "M_BAD_JSON")


def test_error_replies_raise_what_the_module_raised() -> None:
    for status, fields in ((429, {"retry_after_ms": 1500}), (503, {"org.example.why": "maintenance"})):
        reply = {
            "decision": "error",
            "status": status,
            "errcode": "M_LIMIT_EXCEEDED",
            "error": "slow",
            "fields": fields,
            "module": "m",
            "synapse_error": True,
        }
        with pytest.raises(SynapseError) as error:
            check_error(reply)
        assert (error.value.code, error.value.errcode, error.value.msg) == (status, "M_LIMIT_EXCEEDED", "slow")
        assert error.value.error_dict(None) == {"errcode": "M_LIMIT_EXCEEDED", "error": "slow", **fields}
    # glia decided the request fails (a module timed out under policy `error`): never fail open.
    with pytest.raises(GliaModuleFailed):
        check_error({"decision": "error", "status": 500, "errcode": "M_UNKNOWN", "error": "timeout", "module": "m"})
    with pytest.raises(GliaFailure):
        check_error({"decision": "error", "status": 200, "errcode": "M_X", "error": "x", "synapse_error": True})
    with pytest.raises(GliaFailure):
        decode("user_may_invite", {"decision": "maybe"})


def test_a_decided_failure_is_raised_even_when_the_callback_fails_open() -> None:
    failed = {"decision": "error", "status": 500, "errcode": "M_UNKNOWN", "error": "boom", "module": "m"}
    _, api = bridge(failed)
    spam = api.registered["register_spam_checker_callbacks"]
    with pytest.raises(GliaModuleFailed):
        asyncio.run(spam["check_event_for_spam"](FakeEvent({"type": "t", "sender": "@a:hs"})))


def test_replies_of_the_media_ratelimit_unsigned_and_background_callbacks() -> None:
    limit = {"max_bytes": 10, "time_period_ms": 60000, "info_uri": None, "can_upgrade": True}
    (parsed,) = decode("get_media_upload_limits_for_user", {"value": [limit]})
    assert (parsed.max_bytes, parsed.time_period_ms, parsed.can_upgrade) == (10, 60000, True)
    assert decode("get_media_upload_limits_for_user", {"value": []}) == []
    assert decode("get_media_upload_limits_for_user", {"value": None}) is None
    assert decode("get_media_config_for_user", {"value": {"m.upload.size": 5}}) == {"m.upload.size": 5}
    assert decode("is_user_allowed_to_upload_media_of_size", {"decision": "deny", "errcode": "M_TOO_LARGE"}) is False
    override = decode("get_ratelimit_override_for_user", {"value": {"per_second": 0.5, "burst_count": 3}})
    assert (override.per_second, override.burst_count) == (0.5, 3)
    assert decode("add_field_to_unsigned", {"fields": {"x": 1}}) == {"x": 1}
    assert BY_NAME["add_field_to_unsigned"].reply.fail_open() == {}


def test_on_update_is_a_context_manager_whose_entry_asks_glia() -> None:
    made, api = bridge({"value": 250, "module": "m"}, callbacks=["on_update", "default_batch_size"])
    controller = api.registered["register_background_update_controller_callbacks"]
    manager = controller["on_update"]("populate_stats", "master", False)

    async def enter() -> Any:
        async with manager as duration:
            return duration

    assert asyncio.run(enter()) == 250
    assert made._client.calls == [
        ("on_update", {"update_name": "populate_stats", "database_name": "master", "one_shot": False})
    ]
    # No module answers: Synapse's own setting.
    made._client.reply = {"value": None}
    assert asyncio.run(controller["default_batch_size"]("u", "master")) == 100


def test_the_unsigned_callback_is_registered_under_synapses_keyword() -> None:
    _, api = bridge({"fields": {}}, callbacks=["add_field_to_unsigned"])
    assert list(api.registered["register_add_extra_fields_to_unsigned_client_event_callbacks"]) == [
        "add_field_to_unsigned_callback"
    ]


# -- the bridge -----------------------------------------------------------------------------


@dataclass
class FakeApi:
    """Records what the bridge registers."""

    registered: dict[str, dict[str, Any]] = field(default_factory=dict)
    web: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    background: list[str] = field(default_factory=list)
    #: The background processes started, to run: (func, args).
    started: list[tuple[Any, tuple[Any, ...]]] = field(default_factory=list)
    http_client: Any = None
    worker_name: str | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("register_") and name.endswith("_callbacks"):
            return lambda **callbacks: self.registered.setdefault(name, {}).update(callbacks)
        raise AttributeError(name)

    def register_web_resource(self, path: str, resource: Any) -> None:
        self.web.append(path)
        self.resources[path] = resource

    def run_as_background_process(self, desc: str, func: Any, *args: Any) -> None:
        self.background.append(desc)
        self.started.append((func, args))

    #: The seconds of each `sleep`, and what to do at each (e.g. free a port).
    slept: list[float] = field(default_factory=list)
    on_sleep: Any = None

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(len(self.slept))


class FakeClient:
    """Answers every call with `reply`, or raises it; its responses name `generation`."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.generation: str | None = "g1"
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: What `GET /_glia/v1/modules` answers (or raises), and how often it was asked.
        self.modules: Any = {"modules": []}
        self.listings = 0

    async def call(
        self, callback: str, body: dict[str, Any], request_id: str, timeout: float, retry_safe: bool = True
    ) -> tuple[Any, str | None]:
        self.calls.append((callback, body))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply, self.generation

    async def get_modules(self, timeout: float) -> Any:
        self.listings += 1
        if isinstance(self.modules, Exception):
            raise self.modules
        return self.modules


def bridge(reply: Any = None, worker_name: str | None = None, **config: Any) -> tuple[GliaBridge, FakeApi]:
    api = FakeApi(worker_name=worker_name)
    made = GliaBridge(parse_config({"glia_url": UNUSED_URL, "startup_timeout": 0.5, **config}), api)
    made._client = FakeClient(reply)  # type: ignore[assignment]
    made._rediscovery._fetch = made._client.get_modules  # type: ignore[attr-defined]
    return made, api


def test_glia_unreachable_at_startup_registers_the_defaults_and_retries() -> None:
    _, api = bridge(web_resource_paths=["/_synapse/client/demo/hello"])
    spam = api.registered["register_spam_checker_callbacks"]
    assert "check_event_for_spam" in spam and "on_legacy_renew" not in api.registered.get(
        "register_account_validity_callbacks", {}
    )
    assert api.web == ["/_synapse/client"]  # the path is below the default prefix
    assert api.background == ["glia_bridge_discovery"]


def run_started(api: FakeApi) -> list[defer.Deferred[Any]]:
    """Runs the background processes started since the last call, on Twisted's terms."""
    started, api.started = api.started, []
    return [defer.ensureDeferred(func(*args)) for func, args in started]


def late_bridge(reply: Any, **config: Any) -> tuple[GliaBridge, FakeApi, Clock]:
    """A bridge that could not ask glia at start-up, whose retries wait on a fake clock."""
    made, api = bridge(reply, **config)
    clock = Clock()
    made._rediscovery._reactor = clock  # type: ignore[attr-defined]
    return made, api, clock


@dataclass
class FakeRequester:
    user: str = "@a:hs"


def test_once_glia_lists_its_modules_a_callback_none_serves_is_answered_as_without_a_module() -> None:
    made, api, clock = late_bridge(GliaFailure("down", kind="unreachable"))
    spam = api.registered["register_spam_checker_callbacks"]
    rules = api.registered["register_third_party_rules_callbacks"]
    password = api.registered["register_password_auth_provider_callbacks"]
    # Before glia answers, every callback goes to glia and follows its failure mode.
    with pytest.raises(GliaCallbackFailed):
        asyncio.run(spam["user_may_create_room"]("@a:hs", {}))
    with pytest.raises(GliaCallbackFailed):
        asyncio.run(rules["on_create_room"](FakeRequester(), {}, False))

    made._client.modules = {"modules": [{"callbacks": ["check_event_for_spam"]}]}
    (retry,) = run_started(api)
    assert made._client.listings == 0  # the first retry waits discovery_retry_interval
    clock.advance(10)
    assert retry.called and made._client.listings == 1

    asked = len(made._client.calls)
    assert asyncio.run(spam["user_may_create_room"]("@a:hs", {})) is NOT_SPAM
    assert asyncio.run(spam["user_may_join_room"]("@a:hs", "!r", False)) is NOT_SPAM
    assert asyncio.run(rules["on_create_room"](FakeRequester(), {}, False)) is None
    assert asyncio.run(spam["check_registration_for_spam"](None, "u", [], None)) is RegistrationBehaviour.ALLOW
    assert asyncio.run(password["is_3pid_allowed"]("email", "a@hs", True)) is True
    assert asyncio.run(rules["check_event_allowed"](FakeEvent({"type": "t", "sender": "@a:hs"}), {})) == (True, None)
    assert len(made._client.calls) == asked  # none of them asked glia
    # The callback a module serves is asked still (and fails open while glia is down).
    assert asyncio.run(spam["check_event_for_spam"](FakeEvent({"type": "t", "sender": "@a:hs"}))) is NOT_SPAM
    assert len(made._client.calls) == asked + 1


def test_explicit_callbacks_are_forwarded_whatever_glia_lists() -> None:
    made, api, clock = late_bridge(GliaFailure("down", kind="unreachable"), callbacks="all")
    made._client.modules = {"modules": [{"callbacks": ["check_event_for_spam"]}]}
    run_started(api)
    clock.advance(10)
    assert made._client.listings == 1
    with pytest.raises(GliaCallbackFailed):  # as a bridge that listed them at start-up does
        asyncio.run(api.registered["register_spam_checker_callbacks"]["user_may_create_room"]("@a:hs", {}))


def test_a_generation_no_discovery_has_seen_asks_glia_for_its_modules_again() -> None:
    made, api, clock = late_bridge({"decision": "allow", "module": "m"})
    spam = api.registered["register_spam_checker_callbacks"]
    event = FakeEvent({"type": "t", "sender": "@a:hs"})
    made._client.modules = {"modules": [{"callbacks": ["check_event_for_spam", "user_may_create_room"]}]}
    (retry,) = run_started(api)
    # glia answers a callback before the retry is due: the retry asks at once (from the
    # reactor, not within the callback).
    assert asyncio.run(spam["check_event_for_spam"](event)) is NOT_SPAM
    assert made._client.listings == 0
    clock.advance(0)
    assert retry.called and made._client.listings == 1 and not api.started
    asyncio.run(spam["check_event_for_spam"](event))  # the same generation: not asked again
    assert made._client.listings == 1 and not api.started

    # glia reloads without the module serving user_may_create_room.
    made._client.modules = {"modules": [{"callbacks": ["check_event_for_spam"]}]}
    made._client.generation = "g2"
    asyncio.run(spam["check_event_for_spam"](event))
    (rediscovery,) = run_started(api)
    assert rediscovery.called and made._client.listings == 2
    asked = len(made._client.calls)
    assert asyncio.run(spam["user_may_create_room"]("@a:hs", {})) is NOT_SPAM
    assert len(made._client.calls) == asked

    # ... and with it again.
    made._client.modules = {"modules": [{"callbacks": ["check_event_for_spam", "user_may_create_room"]}]}
    made._client.generation = "g3"
    asyncio.run(spam["check_event_for_spam"](event))
    run_started(api)
    made._client.reply = {"decision": "deny", "errcode": "M_FORBIDDEN", "fields": {}, "module": "m"}
    assert asyncio.run(spam["user_may_create_room"]("@a:hs", {})) == (Codes.FORBIDDEN, {})
    assert made._client.listings == 3 and clock.getDelayedCalls() == []


def test_a_discovery_that_fails_retries_until_glia_answers() -> None:
    made, api, clock = late_bridge({"decision": "allow", "module": "m"}, discovery_retry_interval=3)
    made._client.modules = GliaFailure("down", kind="unreachable")
    (retry,) = run_started(api)
    clock.advance(3)
    clock.advance(3)
    assert made._client.listings == 2 and not retry.called
    made._client.modules = {"modules": [{"callbacks": []}]}
    clock.advance(3)
    assert made._client.listings == 3 and retry.called
    spam = api.registered["register_spam_checker_callbacks"]
    assert asyncio.run(spam["user_may_invite"]("@a:hs", "@b:hs", "!r")) is NOT_SPAM and not made._client.calls


def test_what_a_late_listing_names_that_this_process_cannot_serve_is_logged_once(caplog: Any) -> None:
    import logging

    made, api, clock = late_bridge({"decision": "allow", "module": "m"})
    made._client.modules = {
        "modules": [
            {
                "callbacks": ["check_event_for_spam", "add_field_to_unsigned"],
                "web_resources": ["/_synapse/client/m/x", "/elsewhere/y"],
            }
        ]
    }
    run_started(api)
    clock.advance(10)

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "glia serves" in r.msg]

    warnings = warned()
    assert len(warnings) == 2, warnings
    assert "['add_field_to_unsigned']" in warnings[0] and "restart Synapse" in warnings[0]
    assert "['/elsewhere/y']" in warnings[1]  # /_synapse/client/m/x is below the default prefix
    made._client.generation = "g2"  # glia reloaded, same modules: nothing new to say
    asyncio.run(api.registered["register_spam_checker_callbacks"]["check_event_for_spam"](FakeEvent({"type": "t"})))
    run_started(api)
    assert made._client.listings == 2 and warned() == warnings


def test_a_taken_module_api_port_leaves_synapse_running_and_is_tried_again(caplog: Any) -> None:
    import logging
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    made, api = bridge(module_api={"listen": f"127.0.0.1:{port}", "secret": "s"})
    assert made._module_api_port is None
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"127.0.0.1:{port}" in error.getMessage() and "Address already in use" in error.getMessage()
    assert "glia_bridge_module_api_listen" in api.background

    api.on_sleep = lambda count: taken.close() if count == 3 else None  # freed after two more tries
    run_started(api)
    try:
        assert api.slept == [5.0, 10.0, 20.0]  # backing off; the port was free for the third try
        assert made._module_api_port is not None and made._module_api_port.getHost().port == port
    finally:
        taken.close()
        if made._module_api_port is not None:
            made._module_api_port.stopListening()


def test_callbacks_have_synapses_parameters() -> None:
    _, api = bridge()
    spam = api.registered["register_spam_checker_callbacks"]
    assert list(inspect.signature(spam["user_may_create_room"]).parameters) == ["user_id", "room_config"]
    assert len(inspect.signature(spam["check_username_for_spam"]).parameters) == 2
    assert spam["user_may_invite"].__qualname__ == "GliaBridge.user_may_invite"


def test_a_failure_resolves_by_the_callbacks_failure_mode() -> None:
    _, api = bridge(GliaFailure("down", kind="unreachable"), fail_open={"user_may_join_room": True})
    spam = api.registered["register_spam_checker_callbacks"]
    assert asyncio.run(spam["check_event_for_spam"](FakeEvent({"type": "t", "sender": "@a:hs"}))) is NOT_SPAM
    assert asyncio.run(spam["user_may_join_room"]("@a:hs", "!r", False)) is NOT_SPAM
    with pytest.raises(GliaCallbackFailed):
        asyncio.run(spam["user_may_create_room"]("@a:hs", {}))
    rules = api.registered["register_third_party_rules_callbacks"]
    assert asyncio.run(rules["check_event_allowed"](FakeEvent({"type": "t", "sender": "@a:hs"}), {})) == (True, None)


def test_a_callback_forwards_its_arguments_by_synapse_name() -> None:
    made, api = bridge({"decision": "deny", "errcode": "M_FORBIDDEN", "fields": {}, "module": "m"})
    invite = api.registered["register_spam_checker_callbacks"]["user_may_invite"]
    assert asyncio.run(invite("@a:hs", "@b:hs", "!r")) == (Codes.FORBIDDEN, {})
    assert made._client.calls == [("user_may_invite", {"inviter": "@a:hs", "invitee": "@b:hs", "room_id": "!r"})]


def test_discovery_selects_callbacks_login_types_and_web_resources() -> None:
    discovery = Discovery.from_reply(
        {
            "modules": [
                {"callbacks": ["user_may_invite"], "web_resources": ["/_synapse/client/a"], "login_types": ["x.t"]},
                {"callbacks": ["check_auth"], "auth_checkers": [{"login_type": "y.t", "fields": ["f"]}]},
            ],
            "plans": {"user_may_invite": {}},
        }
    )
    auto = parse_config({"glia_url": "http://g"})
    assert [s.name for s in select_callbacks(auto, discovery)] == ["user_may_invite"]
    assert len(select_callbacks(parse_config({"glia_url": "http://g", "callbacks": "all"}), discovery)) == len(
        [s for s in CALLBACKS if not s.only_when_served]
    )
    assert discovery.web_paths == ("/_synapse/client/a",)
    configured = parse_config({"glia_url": "http://g", "login_types": {"x.t": ["token"]}})
    assert select_login_types(configured, discovery) == ({"x.t": ("token",), "y.t": ("f",)}, [])
    assert select_login_types(auto, discovery) == ({"y.t": ("f",)}, ["x.t"])


# -- headers --------------------------------------------------------------------------------


def test_requests_carry_the_token_and_request_id() -> None:
    headers = dict(GliaClient([], "tok")._headers("PUT-1.ab1"))
    assert headers[b"Authorization"] == b"Bearer tok" and headers[b"X-Request-Id"] == b"PUT-1.ab1"


def test_a_jaeger_span_context_becomes_a_w3c_traceparent() -> None:
    @dataclass
    class JaegerContext:
        trace_id: int = 0x4BF92F3577B34DA6A3CE929D0E0E4736
        span_id: int = 0x00F067AA0BA902B7
        flags: int = 1

    assert traceparent_from_ids(JaegerContext()) == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert traceparent_from_ids(object()) is None


def requested(path: bytes) -> list[bytes]:
    """A request path's segments, as Twisted splits and unquotes them."""
    return [unquote(segment) for segment in path[1:].split(b"/")]


def test_glias_web_paths_are_served_as_its_router_serves_them_and_the_rest_as_synapse_would() -> None:
    routes = WebRoutes()
    assert routes.answer(requested(b"/_synapse/client/exact")) is None  # glia has not answered
    routes.update(
        ["/_synapse/client/exact", "/_synapse/client/tree", "/_synapse/client/exact/deeper/x"],
        ["/_synapse/client/tree"],
    )
    for served in (b"/exact", b"/ex%61ct", b"/tree", b"/tree/a/b", b"/exact/deeper/x"):
        assert routes.answer(requested(b"/_synapse/client" + served)) == GLIA, served
    # below an exact path: its resource's default child, Twisted's "No Such Resource"
    for below in (b"/exact/", b"/exact/below", b"/exact/deeper/x/"):
        assert routes.answer(requested(b"/_synapse/client" + below)) == NO_RESOURCE, below
    # on the way to a path, or off the tree: Synapse's placeholders, M_UNRECOGNIZED
    for other in (b"", b"/", b"/other", b"/exact/deeper", b"/exact/deeper/y", b"/other/x"):
        assert routes.answer(requested(b"/_synapse/client" + other)) == UNRECOGNIZED, other


def test_web_resources_are_registered_at_the_prefixes_and_at_known_paths_outside_them() -> None:
    _, api = bridge(web_resource_paths=["/_synapse/client/demo/hello", "/elsewhere/x"])
    assert api.web == ["/_synapse/client", "/elsewhere/x"]
    _, api = bridge(web_resource_paths=["/_synapse/client/demo/hello"], web_resource_prefixes=[])
    assert api.web == ["/_synapse/client/demo/hello"]
    _, api = bridge(web_resource_paths=["/_synapse/client/demo/hello"], web_resources=False)
    assert api.web == []


def test_a_prefix_in_synapses_resource_tree_leaves_synapses_own_resources_in_front() -> None:
    from synapse.util.httpresourcetree import create_resource_tree
    from twisted.web.resource import Resource, getChildForRequest
    from twisted.web.test.requesthelper import DummyRequest

    _, api = bridge(web_resource_paths=["/elsewhere/x"])
    synapses_own = Resource()
    # Synapse's own resources come first in the listener's map, the modules' last.
    tree = create_resource_tree({"/_synapse/client/pick_idp": synapses_own, **api.resources}, Resource())

    def reached(path: bytes) -> Resource:
        return getChildForRequest(tree, DummyRequest(requested(path)))

    prefix, elsewhere = api.resources["/_synapse/client"], api.resources["/elsewhere/x"]
    assert reached(b"/_synapse/client/pick_idp") is synapses_own
    assert reached(b"/_synapse/client") is prefix
    below = reached(b"/_synapse/client/demo/hello")
    assert below.isLeaf and below is reached(b"/_synapse/client/a/b/c") is prefix.getChild(b"x", None)
    assert reached(b"/elsewhere/x") is elsewhere and reached(b"/elsewhere/x/y") is elsewhere.getChild(b"y", None)


# -- replies that hold for a while ------------------------------------------------------------


def heard(generation: str = "g1") -> Generations:
    """Generations that heard of `generation` just now, on a clock that stands still."""
    generations = Generations(clock=lambda: 0.0)
    generations.seen(generation)
    return generations


def test_a_lasting_reply_is_reused_until_its_time_and_never_after() -> None:
    now = [1000.0]
    cache = ReplyCache(heard(), clock_ms=lambda: now[0])
    cache.put("@a:hs", False, 1500, "g1")
    assert cache.get("@a:hs") == (False,)
    now[0] = 1499.9
    assert cache.get("@a:hs") == (False,)
    now[0] = 1500
    assert cache.get("@a:hs") is None and len(cache) == 0
    cache.put("@a:hs", False, 1400, "g1")  # already past: not stored
    cache.put("@b:hs", None, "soon", "g1")  # not a time: not stored
    cache.put("@c:hs", True, True, "g1")
    cache.put("@d:hs", False, 1500, None)  # no generation: not stored
    assert len(cache) == 0


def test_a_lasting_reply_holds_only_while_glia_names_its_generation_and_was_heard_lately() -> None:
    clock = [0.0]
    generations = Generations(clock=lambda: clock[0], fresh_s=1.0)
    generations.seen("g1")
    cache = ReplyCache(generations, clock_ms=lambda: 0.0)
    cache.put("@a:hs", False, 10**15, "g0")  # decided before a reload the response showed
    assert cache.get("@a:hs") is None and len(cache) == 0
    cache.put("@a:hs", False, 10**15, "g1")
    assert cache.get("@a:hs") == (False,)
    clock[0] = 1.5  # nothing heard from glia for longer than fresh_s: ask it again
    assert cache.get("@a:hs") is None and len(cache) == 1
    generations.seen("g1")  # still the same routing: the reply is good again
    assert cache.get("@a:hs") == (False,)
    generations.seen("g2")  # glia reloaded: replies of g1 are over
    assert cache.get("@a:hs") is None and len(cache) == 0
    generations.seen(None)  # a response without the header changes nothing
    assert generations.current == "g2" and generations.holding() == "g2"


def test_a_full_cache_drops_lapsed_entries_then_the_oldest() -> None:
    now = [0.0]
    generations = heard()
    cache = ReplyCache(generations, clock_ms=lambda: now[0], max_entries=3)
    cache.put("a", False, 10, "g1")
    cache.put("b", False, 100, "g1")
    cache.put("c", False, 100, "g1")
    now[0] = 20
    cache.put("d", False, 100, "g1")  # "a" had lapsed
    assert (cache.get("b"), cache.get("c"), cache.get("d")) == ((False,), (False,), (False,))
    cache.put("e", False, 100, "g1")  # the oldest, "b", goes
    assert cache.get("b") is None and cache.get("e") == (False,)
    generations.seen("g2")
    cache.put("f", False, 100, "g2")  # those of g1 go first
    cache.put("g", False, 100, "g2")
    assert (cache.get("f"), cache.get("g"), len(cache)) == ((False,), (False,), 2)


def test_is_user_expired_asks_glia_again_only_when_the_reply_lapsed_or_failed() -> None:
    far = 10**15
    lasting = {"expired": False, "valid_until_ms": far, "generation": "g1", "module": "validity"}
    made, api = bridge(lasting, callbacks=["is_user_expired"])
    is_expired = api.registered["register_account_validity_callbacks"]["is_user_expired"]
    assert [asyncio.run(is_expired("@a:hs")) for _ in range(3)] == [False, False, False]
    assert len(made._client.calls) == 1
    assert asyncio.run(is_expired("@b:hs")) is False and len(made._client.calls) == 2  # per user

    made._client.reply = {"expired": True}  # no lifetime: asked every time
    assert asyncio.run(is_expired("@c:hs")) is True and asyncio.run(is_expired("@c:hs")) is True
    assert len(made._client.calls) == 4

    made._client.reply = GliaFailure("down", kind="unreachable")  # fails open, not remembered
    assert asyncio.run(is_expired("@d:hs")) is None and asyncio.run(is_expired("@d:hs")) is None
    assert len(made._client.calls) == 6


def test_a_reload_of_glia_ends_the_reuse_of_replies_decided_before() -> None:
    far = 10**15
    made, api = bridge(
        {"expired": False, "valid_until_ms": far, "generation": "g1", "module": "validity"},
        callbacks=["is_user_expired", "check_event_for_spam"],
    )
    is_expired = api.registered["register_account_validity_callbacks"]["is_user_expired"]
    check = api.registered["register_spam_checker_callbacks"]["check_event_for_spam"]
    assert asyncio.run(is_expired("@a:hs")) is False and asyncio.run(is_expired("@a:hs")) is False
    assert len(made._client.calls) == 1

    made._client.generation = "g2"  # glia reloaded; any callback's response says so
    made._client.reply = {"decision": "allow"}
    asyncio.run(check(FakeEvent({"type": "t", "sender": "@a:hs"})))
    made._client.reply = {"expired": True, "module": "validity"}
    assert asyncio.run(is_expired("@a:hs")) is True  # asked again: the reload moved the date
    assert len(made._client.calls) == 3

    # A reply decided before the reload, answered after it: not kept.
    made._client.reply = {"expired": False, "valid_until_ms": far, "generation": "g1", "module": "validity"}
    assert asyncio.run(is_expired("@b:hs")) is False and asyncio.run(is_expired("@b:hs")) is False
    assert len(made._client.calls) == 5


# -- a hosted module's soft_failed, written back to Synapse's event --------------------------


def live_event(body: str = "x") -> Any:
    """A real Synapse event, whose internal metadata can be changed."""
    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
    from synapse.events import make_event_from_dict

    pdu = {
        "type": "m.room.message",
        "sender": "@a:hs",
        "room_id": "!r:hs",
        "content": {"body": body},
        "prev_events": [],
        "auth_events": [],
        "depth": 1,
        "hashes": {},
        "signatures": {},
        "origin_server_ts": 0,
        "unsigned": {},
    }
    return make_event_from_dict(pdu, KNOWN_ROOM_VERSIONS["10"], {})


def test_the_event_of_a_callback_in_flight_takes_the_soft_failed_a_host_sends() -> None:
    from glia_synapse.events_in_flight import IN_FLIGHT

    made, api = bridge({"decision": "allow", "module": "m"})
    made._module_api_port = object()  # this process serves the ModuleApi channel
    event, other = live_event("x"), live_event("y")
    seen_during_the_call: list[int] = []

    class Host(FakeClient):
        async def call(self, callback: str, body: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            # What the channel does when the host's module soft-failed its copy.
            seen_during_the_call.append(IN_FLIGHT.set_soft_failed(body["event"]["event_id"], True))
            return await super().call(callback, body, *args, **kwargs)

    made._client = Host({"decision": "allow", "module": "m"})  # type: ignore[assignment]
    spam = api.registered["register_spam_checker_callbacks"]
    assert asyncio.run(spam["check_event_for_spam"](event)) is NOT_SPAM
    assert seen_during_the_call == [1]
    assert event.internal_metadata.is_soft_failed() and not other.internal_metadata.is_soft_failed()
    assert len(IN_FLIGHT) == 0  # released after the call
    assert IN_FLIGHT.set_soft_failed(event.event_id, True) == 0

    made._module_api_port = None  # a worker: nothing is held
    made._client = Host({"decision": "allow", "module": "m"})  # type: ignore[assignment]
    assert asyncio.run(spam["check_event_for_spam"](other)) is NOT_SPAM
    assert seen_during_the_call == [1, 0] and not other.internal_metadata.is_soft_failed()


def test_the_channel_sets_soft_failed_by_event_id() -> None:
    import io
    import json

    from glia_synapse.events_in_flight import IN_FLIGHT
    from glia_synapse.module_api_server import set_soft_failed

    @dataclass
    class Request:
        content: io.BytesIO

    event = live_event()
    held = IN_FLIGHT.hold(event)
    assert held == event.event_id
    try:
        body = {"args": {"event_id": event.event_id, "soft_failed": True}}
        assert set_soft_failed(Request(io.BytesIO(json.dumps(body).encode()))) == (200, {"result": 1})
        assert event.internal_metadata.is_soft_failed()
        bad = {"args": {"event_id": event.event_id, "soft_failed": "yes"}}
        assert set_soft_failed(Request(io.BytesIO(json.dumps(bad).encode())))[0] == 400
    finally:
        IN_FLIGHT.release(held, event)
    assert len(IN_FLIGHT) == 0


def test_named_files_are_read_bounded_and_only_when_regular(tmp_path: Any) -> None:
    """Every file the bridge and the Python host read from a path goes through one bounded,
    regular-file-only reader: /dev/zero, a FIFO or a directory fails at once, a file over the
    cap is refused."""
    import os

    from glia_synapse import files

    token = tmp_path / "token"
    token.write_text("secret\n")
    assert files.read_text(token) == "secret\n"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo), str(tmp_path)):
        with pytest.raises(OSError, match="not a regular file"):
            files.read_text(path)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(OSError, match="larger than 10 bytes"):
        files.read_text(big, 10)


# -- Synapse with workers: where each callback is invoked, and notifications forwarded once ---------

WORKERS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "synapse-workers.md"


def test_the_docs_table_of_where_synapse_invokes_each_callback_is_the_catalogues() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|", WORKERS_PAGE.read_text(), re.MULTILINE)
    assert dict(rows) == {name: spec.invoked_in for name, spec in BY_NAME.items()}
    assert len(rows) == len(BY_NAME), "a callback listed twice"
    assert {spec.invoked_in for spec in BY_NAME.values()} == {WORK, BACKGROUND, EVERY}


def test_every_callback_synapse_invokes_in_every_process_has_a_forwarding_rule() -> None:
    every = {name for name, spec in BY_NAME.items() if spec.invoked_in == EVERY}
    assert set(once.FORWARDED_BY) == every == {"on_new_event"}
    assert set(forwarding_rules(parse_config({"glia_url": UNUSED_URL}))) == every
    assert forwarding_rules(parse_config({"glia_url": UNUSED_URL, "notifications": "every_process"})) == {}
    with pytest.raises(ConfigError, match="'once' or 'every_process'"):
        parse_config({"glia_url": UNUSED_URL, "notifications": "main"})


def persisted_by(instance: str | None) -> Any:
    """A message event as Synapse hands it to `on_new_event`, persisted by `instance`."""
    event = make_event_from_dict(
        {
            "type": "m.room.message",
            "room_id": "!r:hs",
            "sender": "@a:hs",
            "event_id": "$e",
            "content": {"body": "hi"},
            "origin_server_ts": 1764000000000,
            "auth_events": [],
            "prev_events": [],
            "depth": 1,
            "hashes": {"sha256": "x"},
            "signatures": {},
        }
    )
    event.internal_metadata.instance_name = instance
    return event


@pytest.mark.parametrize(
    ("process", "persister", "forwarded"),
    [
        ("worker1", "worker1", True),
        ("worker1", "worker2", False),
        (None, "worker2", False),  # the main process, which persisted nothing
        (None, "master", True),  # the main process as the only persister
        ("worker2", None, True),  # no persister named: forwarded rather than lost
    ],
)
def test_on_new_event_is_forwarded_by_the_process_that_persisted_the_event(
    process: str | None, persister: str | None, forwarded: bool
) -> None:
    made, api = bridge({"decision": "allow"}, worker_name=process)
    on_new_event = api.registered["register_third_party_rules_callbacks"]["on_new_event"]
    assert asyncio.run(on_new_event(persisted_by(persister), {})) is None
    assert [name for name, _ in made._client.calls] == (["on_new_event"] if forwarded else [])


def test_every_process_forwards_on_new_event_when_told_to() -> None:
    made, api = bridge({"decision": "allow"}, worker_name="worker1", notifications="every_process")
    on_new_event = api.registered["register_third_party_rules_callbacks"]["on_new_event"]
    asyncio.run(on_new_event(persisted_by("worker2"), {}))
    assert [name for name, _ in made._client.calls] == ["on_new_event"]
