"""Every answer conversion of the host (`answers.py`) against the test Synapse applies to the
module's value: identity (`is False`, `is NOT_SPAM`), type (`isinstance(res, dict)`, a `set`,
a `tuple`, a `RegistrationBehaviour`) or Python's truthiness. A value must reach glia in a
form glia reads as Synapse reads the value itself (glia's readings: bus-schema `answers.rs`,
runtime `coordinator/reduce.rs`):

- a spam answer: `"NOT_SPAM"` allows, `true`/`false` are the legacy booleans, `{"errcode"}`
  denies with that code, `{"message"}` is a string answer, anything else (`null`) is invalid;
- `check_event_allowed`: `allowed: false` denies, a `replacement` replaces, anything else
  carries on;
- a third-party yes/no check: only `false` denies;
- a truthiness answer: JSON's truthiness, which is why the host sends Python's as a bool;
- an answer glia cannot read at all fails the invocation, so only values Synapse fails on may
  become one (the host raises, as Synapse does, and the module's failure policy answers).
"""

from __future__ import annotations

import enum
from typing import Any

import pytest
from conftest import run

from glia_python_host import answers
from glia_python_host.hosted import HostedModule
from glia_python_host.settings import HomeserverSettings


class Falsy:
    """An object Python finds false (its JSON form, its `repr`, is a non-empty string)."""

    def __len__(self) -> int:
        return 0


class NotBool(enum.Enum):
    """Enum members are true whatever their value; JSON sends their value."""

    NO = False
    ZERO = 0
    NAME = "alice"


def answer(callback: str, value: Any, args: dict[str, Any] | None = None) -> Any:
    return answers.answer(callback, value, args or {})


# -- check_event_allowed --------------------------------------------------------------------

REPLACEMENT = {"type": "m.room.message", "content": {"body": "replaced"}}


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        # Only `res is False` denies in Synapse; a replacement is ignored then.
        ((False, None), {"allowed": False}),
        ((False, REPLACEMENT), {"allowed": False}),
        ([False, None], {"allowed": False}),  # a list unpacks as well as a tuple
        ((True, None), {"allowed": True}),
        # Neither False nor a dict: carry on to the next module (Synapse's default is allow).
        ((None, None), {"allowed": None}),
        ((0, None), {"allowed": None}),
        (("", None), {"allowed": None}),
        ((True, "not a dict"), {"allowed": True}),
        ((True, ["a", "list"]), {"allowed": True}),
        ("ok", {"allowed": None}),  # two characters unpack into two
        # A dict replacement replaces whatever the first element is, unless it is False.
        ((None, REPLACEMENT), {"allowed": None, "replacement": REPLACEMENT}),
        ((0, REPLACEMENT), {"allowed": None, "replacement": REPLACEMENT}),
        ((True, REPLACEMENT), {"allowed": True, "replacement": REPLACEMENT}),
    ],
)
def test_check_event_allowed_denies_only_on_false_and_replaces_with_a_dict(value: Any, wire: Any) -> None:
    assert answer("check_event_allowed", value) == wire


def test_check_event_allowed_replaces_only_with_a_dict_not_another_mapping() -> None:
    from synapse.util.frozenutils import freeze

    frozen = freeze({"type": "m.room.message", "content": {}})
    assert not isinstance(frozen, dict)
    assert answer("check_event_allowed", (True, frozen)) == {"allowed": True}


@pytest.mark.parametrize("value", [None, True, False, (True,), (True, None, None), 3])
def test_a_check_event_allowed_answer_synapse_cannot_unpack_is_the_modules_failure(value: Any) -> None:
    with pytest.raises(TypeError, match="cannot unpack"):
        answer("check_event_allowed", value)


# -- spam checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"errcode": "M_LIMIT_EXCEEDED"},  # a dict is not a Codes: invalid, M_FORBIDDEN in Synapse
        {"message": "NOT_SPAM"},  # nor a string: must not read as NOT_SPAM
        {"message": "a message"},
        object(),  # its repr must not become check_event_for_spam's message
        ["M_FORBIDDEN", {}],  # a list is not the (Codes, dict) tuple
        NotBool.NO,
        None,
        0,
        1,
    ],
)
def test_a_spam_answer_synapse_finds_invalid_is_sent_as_null(value: Any) -> None:
    for callback in ("check_event_for_spam", "user_may_invite", "check_media_file_for_spam", "check_login_for_spam"):
        assert answer(callback, value) is None, callback


def test_the_spam_answers_synapse_accepts_keep_their_shape() -> None:
    from synapse.api.errors import Codes
    from synapse.module_api import NOT_SPAM

    assert answer("user_may_invite", NOT_SPAM) == "NOT_SPAM"
    assert answer("user_may_invite", True) is True
    assert answer("check_event_for_spam", False) is False
    assert answer("user_may_invite", Codes.LIMIT_EXCEEDED) == {"errcode": "M_LIMIT_EXCEEDED"}
    assert answer("check_login_for_spam", (Codes.FORBIDDEN, {"k": 1})) == {"errcode": "M_FORBIDDEN", "fields": {"k": 1}}
    assert answer("check_event_for_spam", "no links") == {"message": "no links"}


# -- truthiness -----------------------------------------------------------------------------


TRUTHINESS = ("should_drop_federated_event", "check_username_for_spam", "is_user_allowed_to_upload_media_of_size")


@pytest.mark.parametrize(
    ("value", "truthy"),
    [(Falsy(), False), (b"", False), (NotBool.ZERO, True), (NotBool.NO, True), ("no", True), (None, False)],
)
def test_truthiness_answers_are_pythons(value: Any, truthy: bool) -> None:
    for callback in TRUTHINESS:
        assert answer(callback, value) is truthy, callback


@pytest.mark.parametrize(
    ("value", "expired"),
    [(None, None), (True, True), (False, False), (1, True), (0, False), ("", False), ("yes", True)],
)
def test_is_user_expired_decides_on_anything_but_none_and_is_read_by_truthiness(value: Any, expired: Any) -> None:
    assert answer("is_user_expired", value) is expired


# -- third-party yes/no checks and is_3pid_allowed: `is False` ------------------------------

YES_NO = (
    "check_threepid_can_be_invited",
    "check_visibility_can_be_modified",
    "check_can_shutdown_room",
    "check_can_deactivate_user",
    "is_3pid_allowed",
)


@pytest.mark.parametrize(("value", "wire"), [(False, False), (True, True), (None, None), (0, None), (NotBool.NO, None)])
def test_yes_no_checks_deny_only_on_false_itself(value: Any, wire: Any) -> None:
    for callback in YES_NO:
        assert answer(callback, value) is wire, callback


# -- values Synapse reads by type -----------------------------------------------------------


def test_check_registration_for_spam_must_be_a_registration_behaviour() -> None:
    from synapse.spam_checker_api import RegistrationBehaviour

    assert answer("check_registration_for_spam", RegistrationBehaviour.SHADOW_BAN) == "shadow_ban"
    for value in ("deny", None, True):
        with pytest.raises(AssertionError):
            answer("check_registration_for_spam", value)


@pytest.mark.parametrize("callback", ["get_username_for_registration", "get_displayname_for_registration"])
def test_registration_names_are_strings_only(callback: str) -> None:
    assert answer(callback, "alice") == "alice"
    for ignored in (NotBool.NAME, object(), ["alice"], 3, None):
        assert answer(callback, ignored) is None, ignored


@pytest.mark.parametrize("callback", ["check_auth", "check_3pid_auth"])
def test_an_auth_answer_must_be_a_tuple_of_a_string_and_a_callable_or_none(callback: str) -> None:
    from synapse.types import UserID

    assert answer(callback, ("@alice:example.com", None)) == {"user_id": "@alice:example.com"}
    for skipped in (
        "@alice:example.com",  # a bare string (the legacy form, which only Synapse's adapter accepts)
        ["@alice:example.com", None],  # a list
        (UserID.from_string("@alice:example.com"), None),  # not a str
        ("@alice:example.com", "not callable"),
        ("@alice:example.com",),
        None,
    ):
        assert answer(callback, skipped) is None, skipped


def test_presence_answers_are_read_as_synapse_reads_them() -> None:
    from synapse.api.presence import UserPresenceState

    state = UserPresenceState.default("@alice:example.com")
    # Reading stops at the first value that is not a set; what came before counts.
    users = answer("get_users_for_states", {"@a:x": {state}, "@b:x": [state], "@c:x": {state}})
    assert list(users) == ["@a:x"]
    assert answer("get_users_for_states", {"@a:x": frozenset([state])}) == {}
    assert answer("get_users_for_states", [("@a:x", {state})]) == {}
    assert answer("get_users_for_states", None) == {}

    assert answer("get_interested_users", "ALL") == "ALL"
    assert answer("get_interested_users", {"@b:x", "@a:x"}) == ["@a:x", "@b:x"]
    for skipped in ("@bob:x", ["@a:x"], frozenset(["@a:x"]), {"@a:x": 1}, None):
        assert answer("get_interested_users", skipped) == [], skipped


def test_media_config_and_ratelimit_overrides_take_the_first_truthy_answer() -> None:
    from synapse.module_api.callbacks.ratelimit_callbacks import RatelimitOverride

    for falsy in (None, {}, False, 0):
        assert answer("get_media_config_for_user", falsy) is None, falsy
        assert answer("get_ratelimit_override_for_user", falsy) is None, falsy
    assert answer("get_media_config_for_user", {"m.upload.size": 5}) == {"m.upload.size": 5}
    override = RatelimitOverride(per_second=0.5, burst_count=3)
    assert answer("get_ratelimit_override_for_user", override) == {"per_second": 0.5, "burst_count": 3}
    with pytest.raises(AttributeError):  # Synapse reads `.per_second`: a dict fails there
        answer("get_ratelimit_override_for_user", {"per_second": 0.5, "burst_count": 3})


def test_upload_limits_are_sorted_as_synapse_sorts_them_and_must_be_a_list() -> None:
    from synapse.module_api import MediaUploadLimit

    day, hour = MediaUploadLimit(max_bytes=10, time_period_ms=86_400_000), MediaUploadLimit(5, 3_600_000)
    assert [limit["time_period_ms"] for limit in answer("get_media_upload_limits_for_user", [hour, day])] == [
        86_400_000,
        3_600_000,
    ]
    assert answer("get_media_upload_limits_for_user", []) == []
    with pytest.raises(AttributeError):
        answer("get_media_upload_limits_for_user", (hour,))


def test_unsigned_fields_are_merged_with_dict_update() -> None:
    assert answer("add_field_to_unsigned", {"k": 1}) == {"k": 1}
    assert answer("add_field_to_unsigned", [("k", 1), ("j", 2)]) == {"k": 1, "j": 2}
    with pytest.raises(TypeError):
        answer("add_field_to_unsigned", None)


# -- through a hosted module ----------------------------------------------------------------

RULES_MODULE = """
class Rules:
    def __init__(self, config, api):
        api.register_third_party_rules_callbacks(check_event_allowed=self.check_event_allowed)

    async def check_event_allowed(self, event, state_events):
        body = event.content.get("body")
        if body == "none":
            return None, None
        if body == "zero":
            return 0, None
        if body == "replace":
            return None, {**event.get_dict(), "content": {"body": "replaced"}}
        if body == "bare":
            return True
        return False, None
"""


def test_a_hosted_check_event_allowed_answering_none_none_carries_on(tmp_path: Any) -> None:
    import sys

    (tmp_path / "rules_module.py").write_text(RULES_MODULE)
    sys.path.insert(0, str(tmp_path))
    module = HostedModule("rules_module.Rules", {}, HomeserverSettings.from_json({"server_name": "example.com"}))

    def invoke(body: str) -> Any:
        event = {
            "type": "m.room.message",
            "sender": "@a:example.com",
            "room_id": "!r:example.com",
            "content": {"body": body},
            "room_version": "10",
        }
        args = {"event": event, "state_events": []}
        return run(module.invoke({"request_id": "r", "callback": "check_event_allowed", "args": args}))["result"]

    assert invoke("none") == {"answer": {"callback": "check_event_allowed", "answer": {"allowed": None}}}
    assert invoke("zero")["answer"]["answer"] == {"allowed": None}
    replaced = invoke("replace")["answer"]["answer"]
    assert (replaced["allowed"], replaced["replacement"]["content"]) == (None, {"body": "replaced"})
    assert invoke("deny")["answer"]["answer"] == {"allowed": False}
    failed = invoke("bare")["error"]
    assert failed["kind"] == "failed" and "cannot unpack" in failed["message"]


# -- a module's soft_failed, written back to Synapse's event ----------------------------------

SOFT_FAIL_MODULE = """
class SoftFail:
    def __init__(self, config, api):
        api.register_spam_checker_callbacks(check_event_for_spam=self.check_event_for_spam)

    async def check_event_for_spam(self, event):
        if event.content.get("body") == "soft":
            event.internal_metadata.soft_failed = True
        if event.content.get("body") == "raise":
            event.internal_metadata.soft_failed = True
            raise RuntimeError("broken")
        return False
"""


def test_a_soft_failed_set_by_the_module_is_sent_to_the_bridge(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    from glia_python_host.channel import Channel
    from glia_python_host.decode import decode_event

    (tmp_path / "soft_fail_module.py").write_text(SOFT_FAIL_MODULE)
    sys.path.insert(0, str(tmp_path))
    settings = HomeserverSettings.from_json({"server_name": "example.com"})
    module = HostedModule("soft_fail_module.SoftFail", {}, settings)

    def event(body: str, **metadata: Any) -> dict[str, Any]:
        return {
            "type": "m.room.message",
            "sender": "@a:example.com",
            "room_id": "!r:example.com",
            "content": {"body": body},
            "room_version": "10",
            "internal_metadata": metadata,
        }

    def invoke(raw: dict[str, Any]) -> Any:
        invocation = {"request_id": "r", "callback": "check_event_for_spam", "args": {"event": raw}}
        return run(module.invoke(invocation))["result"]

    # Without the ModuleApi channel the change stays in the host, with a warning.
    assert invoke(event("soft")) == {"answer": {"callback": "check_event_for_spam", "answer": False}}
    assert "without a python.module_api channel" in caplog.text

    sent: list[tuple[str, bool]] = []

    async def set_soft_failed(self: Channel, event_id: str, soft_failed: bool) -> int:
        sent.append((event_id, soft_failed))
        return 1

    monkeypatch.setattr(Channel, "set_soft_failed", set_soft_failed)
    assert invoke(event("soft"))["answer"]["answer"] is False
    assert sent == [(decode_event(event("soft")).event_id, True)]
    invoke(event("plain"))  # unchanged: nothing sent
    # The module's copy has the flags Synapse's event had (read as Synapse's own methods read them).
    assert decode_event(event("soft", soft_failed=True)).internal_metadata.is_soft_failed()
    invoke(event("soft", soft_failed=True))  # already soft-failed: nothing changed
    assert len(sent) == 1
    # Raising still changed Synapse's event in Synapse's process: the change is sent too.
    assert invoke(event("raise"))["error"]["kind"] == "failed"
    assert sent[-1] == (decode_event(event("raise")).event_id, True)
