"""Exactly Synapse (issue 10): the same scripted modules inside Synapse and through the bridge
and glia, and a Matrix client that must see the same thing on both (differential.py).

Each test sets a script, does one client action on both homeservers, and compares what the
client saw: status, errcode, message, extra fields, and what was stored. Where the order of
modules matters, s1 and s2 both answer. The call logs show which modules each side invoked.
A few expectations are glia's own (an invalid answer, parallel invocation): those say so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from differential import DEMO_PATH, LOGIN_TYPE, S2_CALLBACKS, Both, Differential, Side, fresh, room_path, upload
from harness import Reply, http_request

INTERNAL_ERROR = (500, {"errcode": "M_UNKNOWN", "error": "Internal server error"})
RAISE = {"raise": {"exception": "the module broke"}}


def deny(errcode: str = "M_FORBIDDEN", **fields: Any) -> dict[str, Any]:
    """A spam checker's `Codes` answer (with `fields`: the `(Codes, dict)` tuple)."""
    return {"return": {"codes": errcode, **({"fields": fields} if fields else {})}}


def synapse_error(status: int, errcode: str, error: str, **fields: Any) -> dict[str, Any]:
    """Raise `SynapseError(status, error, errcode, fields)`."""
    return {"raise": {"status": status, "errcode": errcode, "error": error, "fields": fields}}


def room_of(diff: Differential, owner: str, **body: Any) -> Both[str]:
    """A fresh room of `owner` on both homeservers."""

    def create(side: Side) -> str:
        reply = side.user(owner).create_room(**body)
        assert reply.status == 200, (side.label, reply)
        return reply.body["room_id"]

    return diff.on_both(create)


def bodies(side: Side, viewer: str, room_id: str) -> list[tuple[str, str]]:
    """What `viewer` sees of the room's messages, server names normalised."""
    return [tuple(side.normalise(m)) for m in side.user(viewer).message_bodies(room_id)]  # type: ignore[misc]


# -- 1. a module's exception is a 500 -------------------------------------------------------


def test_a_spam_checker_that_raises_fails_the_send_with_500_and_nothing_is_stored(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    diff.script({"s1": {"check_event_for_spam": RAISE}})
    replies = diff.compare(lambda s: s.user("alice").send_text(rooms[s], "first"))
    assert diff.native.seen(replies.native) == INTERNAL_ERROR
    assert diff.same_calls("check_event_for_spam") == ["s1"]  # the exception stops the chain
    assert diff.on_both(lambda s: bodies(s, "alice", rooms[s])) == Both([], [])


def test_a_raising_spam_checker_after_an_allowing_one_fails_and_before_a_denying_one_wins(
    diff: Differential,
) -> None:
    rooms = room_of(diff, "alice")
    diff.script({"s2": {"check_event_for_spam": RAISE}})
    assert diff.native.seen(diff.compare(lambda s: s.user("alice").send_text(rooms[s], "x")).native) == INTERNAL_ERROR
    assert diff.same_calls("check_event_for_spam") == ["s1", "s2"]

    diff.script({"s1": {"check_event_for_spam": RAISE}, "s2": {"check_event_for_spam": deny()}})
    assert diff.native.seen(diff.compare(lambda s: s.user("alice").send_text(rooms[s], "y")).native) == INTERNAL_ERROR
    assert diff.same_calls("check_event_for_spam") == ["s1"]

    diff.script({"s1": {"check_event_for_spam": deny("M_LIMIT_EXCEEDED")}, "s2": {"check_event_for_spam": RAISE}})
    replies = diff.compare(lambda s: s.user("alice").send_text(rooms[s], "z"))
    assert (replies.native.status, replies.native.errcode) == (403, "M_LIMIT_EXCEEDED")
    assert diff.same_calls("check_event_for_spam") == ["s1"]
    assert diff.on_both(lambda s: bodies(s, "alice", rooms[s])) == Both([], [])


def test_is_user_expired_raising_fails_every_authenticated_request_with_500(diff: Differential) -> None:
    victim = fresh("expiring")
    diff.on_both(lambda s: s.user(victim))
    diff.script({"s1": {"is_user_expired": {"if": {"arg": "user_id", "contains": victim}, "then": RAISE}}})
    for path in ("/_matrix/client/v3/account/whoami", "/_matrix/client/v3/joined_rooms"):
        replies = diff.compare(lambda s, path=path: s.user(victim).request("GET", path))
        assert diff.native.seen(replies.native) == INTERNAL_ERROR
    diff.compare(lambda s: s.user("alice").whoami())  # others are not affected
    assert diff.on_both(lambda s: s.user("alice").whoami().status) == Both(200, 200)


def test_is_user_expired_takes_the_first_answer_that_is_not_none(diff: Differential) -> None:
    user = fresh("expiry")
    diff.on_both(lambda s: s.user(user))

    def expiry(action: dict[str, Any]) -> dict[str, Any]:
        return {"is_user_expired": {"if": {"arg": "user_id", "contains": user}, "then": action}}

    diff.script({"s1": expiry({"return": True}), "s2": expiry(RAISE)})
    replies = diff.compare(lambda s: s.user(user).whoami())
    assert (replies.native.status, replies.native.errcode) == (403, "ORG_MATRIX_EXPIRED_ACCOUNT")

    diff.script({"s1": expiry({"return": False}), "s2": expiry(RAISE)})
    assert diff.compare(lambda s: s.user(user).whoami()).native.status == 200  # s2 never asked

    diff.script({"s2": expiry(RAISE)})  # s1 has no opinion (None): s2's exception counts
    assert diff.native.seen(diff.compare(lambda s: s.user(user).whoami()).native) == INTERNAL_ERROR


def test_on_user_registration_raising_fails_the_registration(diff: Differential) -> None:
    newcomer = fresh("newcomer")
    diff.script({"s1": {"on_user_registration": RAISE}})
    replies = diff.compare(lambda s: s.synapse.try_register(newcomer))
    assert diff.native.seen(replies.native) == INTERNAL_ERROR
    diff.reset()
    # As in Synapse, the user was stored before the module was told: the name is taken.
    replies = diff.compare(lambda s: s.synapse.try_register(newcomer))
    assert (replies.native.status, replies.native.errcode) == (400, "M_USER_IN_USE")


def test_check_event_allowed_answering_a_bare_none_fails_the_send_with_500(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    diff.script({"s1": {"check_event_allowed": {"return": None}}})
    replies = diff.compare(lambda s: s.user("alice").send_text(rooms[s], "allowed?"))
    assert diff.native.seen(replies.native) == INTERNAL_ERROR
    assert diff.same_calls("check_event_allowed") == ["s1"]
    assert diff.on_both(lambda s: bodies(s, "alice", rooms[s])) == Both([], [])


def test_check_event_allowed_answers_and_exceptions_as_synapse_reads_them(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    cases: list[tuple[dict[str, Any], tuple[int, Any]]] = [
        (synapse_error(403, "ORG_EXAMPLE_RULE", "nope", **{"org.example.k": 1}), (403, None)),
        (RAISE, INTERNAL_ERROR),
        ({"return": {"event_allowed": [False, None]}}, (403, None)),
        ({"return": False}, INTERNAL_ERROR),  # not a tuple: Synapse cannot unpack it
        ({"return": {"event_allowed": [True, None]}}, (200, None)),
    ]
    for action, (status, body) in cases:
        diff.script({"s1": {"check_event_allowed": action}})
        replies = diff.compare(lambda s: s.user("alice").send_text(rooms[s], "rules"))
        seen = diff.native.seen(replies.native)
        assert seen[0] == status and (body is None or seen[1] == body), (action, seen)
        assert diff.same_calls("check_event_allowed") == (["s1", "s2"] if status == 200 else ["s1"]), action
    assert diff.native.seen(diff.compare(lambda s: s.user("alice").send_text(rooms[s], "x")).native)[0] == 200


def test_a_check_event_allowed_replacement_is_stored_and_stops_the_chain(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    replaced = {"msgtype": "m.text", "body": "replaced by s1"}
    diff.script(
        {"s1": {"check_event_allowed": {"return": {"replace_content": replaced}}}, "s2": {"check_event_allowed": RAISE}}
    )
    assert diff.compare(lambda s: s.user("alice").send_text(rooms[s], "original")).native.status == 200
    assert diff.same_calls("check_event_allowed") == ["s1"]
    assert diff.on_both(lambda s: bodies(s, "alice", rooms[s])) == Both(
        [("@alice:HS", "replaced by s1")], [("@alice:HS", "replaced by s1")]
    )


def password_login(side: Side, localpart: str) -> Reply:
    """`POST /login` with the password `Synapse.register` gave the user."""
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": localpart},
        "password": f"pw-{localpart}",
    }
    return side.user(localpart).request("POST", "/_matrix/client/v3/login", body, auth=False)


def test_a_login_is_told_to_on_user_login_and_its_exception_fails_the_login(diff: Differential) -> None:
    diff.on_both(lambda s: s.user("alice"))
    diff.clear_calls()
    assert diff.compare(lambda s: password_login(s, "alice")).native.status == 200
    diff.wait_for_calls("on_user_login", 1)
    told = diff.on_both(lambda s: [c["args"] for c in s.calls("on_user_login")])
    assert (
        told.native
        == told.glia
        == [{"user_id": "@alice:HS", "auth_provider_type": "m.login.password", "auth_provider_id": None}]
    )
    diff.script({"s1": {"on_user_login": RAISE}})
    assert diff.native.seen(diff.compare(lambda s: password_login(s, "alice")).native) == INTERNAL_ERROR


def test_a_modules_login_type_logs_the_user_in_as_its_auth_checker_says(diff: Differential) -> None:
    login_type, _ = LOGIN_TYPE
    diff.on_both(lambda s: s.user("alice"))
    diff.script(
        {
            "s2": {
                "check_auth": {
                    "if": {"arg": "login_dict.token", "equals": "open sesame"},
                    "then": {"return": {"auth": {"arg": "username"}}},
                }
            }
        }
    )

    def login(side: Side, token: str) -> Reply:
        body = {"type": login_type, "identifier": {"type": "m.id.user", "user": side.mxid("alice")}, "token": token}
        return side.user("alice").request("POST", "/_matrix/client/v3/login", body, auth=False)

    flows = diff.on_both(lambda s: s.user("alice").request("GET", "/_matrix/client/v3/login", auth=False).body)
    assert {"type": login_type} in flows.native["flows"] and {"type": login_type} in flows.glia["flows"], flows
    assert diff.compare(lambda s: login(s, "open sesame")).native.status == 200
    replies = diff.compare(lambda s: login(s, "wrong"))
    assert diff.native.seen(replies.native) == (
        403,
        {"errcode": "M_FORBIDDEN", "error": "Invalid username or password"},
    )
    # s1 registered the login type too (with other fields): both checkers are asked, in order.
    assert diff.same_calls("check_auth") == ["s1", "s2", "s1", "s2"]


# -- every spam-checker answer, read as Synapse reads it -------------------------------------

#: Answers a spam checker may give (JSON encoding of scripted_common), including invalid ones.
SPAM_ANSWERS: dict[str, Any] = {
    "NOT_SPAM": "NOT_SPAM",
    "True": True,
    "False": False,
    "None": None,
    "Codes": {"codes": "M_LIMIT_EXCEEDED"},
    "Codes+dict": {"codes": "M_LIMIT_EXCEEDED", "fields": {"org.example.why": "flood"}},
    "message": {"message": "a module's own words"},
    "dict": {"dict": {"unexpected": True}},
}


def spam_actions() -> dict[str, Callable[[Differential, Side], Reply]]:
    """One client action per spam checker, each on fresh state."""

    def send(diff: Differential, side: Side) -> Reply:
        room = side.user("alice").create_room().body["room_id"]
        return side.user("alice").send_text(room, "is this spam?")

    def join(diff: Differential, side: Side) -> Reply:
        room = side.user("alice").create_room(preset="public_chat").body["room_id"]
        return side.user("bob").join(room)

    def state(diff: Differential, side: Side) -> Reply:
        room = side.user("alice").create_room().body["room_id"]
        return side.user("alice").request("PUT", room_path(room, "state/org.example.state/"), {"k": 1})

    return {
        "check_event_for_spam": send,
        "user_may_create_room": lambda diff, side: side.user("alice").create_room(),
        "user_may_join_room": join,
        "user_may_send_state_event": state,
        "check_login_for_spam": lambda diff, side: password_login(side, "alice"),
    }


@pytest.mark.parametrize("answer", list(SPAM_ANSWERS))
@pytest.mark.parametrize("callback", list(spam_actions()))
def test_every_spam_checker_answer_is_read_as_synapse_reads_it(diff: Differential, callback: str, answer: str) -> None:
    act = spam_actions()[callback]
    diff.on_both(lambda s: (s.user("alice"), s.user("bob")))
    diff.script({"s1": {callback: {"return": SPAM_ANSWERS[answer]}}})
    replies = diff.compare(lambda s: act(diff, s))
    if callback == "user_may_create_room":
        return  # s2 runs in parallel there: see test_a_parallel_module_is_invoked_after_a_deny_unlike_in_synapse
    asked = diff.on_both(
        lambda s: [
            c["module"]
            for c in s.calls(callback)
            if callback != "check_event_for_spam" or c["args"]["event"]["content"].get("body") == "is this spam?"
        ]
    )
    allowed = replies.native.status == 200
    assert asked.native == asked.glia == (["s1", "s2"] if callback in S2_CALLBACKS and allowed else ["s1"])


def test_a_not_spam_string_made_at_run_time_is_read_as_synapse_reads_it(diff: Differential) -> None:
    """Synapse compares `user_may_*` answers with `NOT_SPAM` by identity, so an equal string
    built at run time (here decoded from JSON) denies; the Python host keeps that identity
    (only the very object is `"NOT_SPAM"` on the wire). `check_event_for_spam` compares by
    equality in Synapse, so there the string allows."""
    diff.script({"s1": {"user_may_create_room": {"return": {"string": "NOT_SPAM"}}}})
    replies = diff.compare(lambda s: s.user("alice").create_room())
    assert diff.native.seen(replies.native) == (
        403,
        {"errcode": "M_FORBIDDEN", "error": "You are not permitted to create rooms"},
    )
    diff.reset()
    rooms = room_of(diff, "alice")
    diff.script({"s1": {"check_event_for_spam": {"return": {"string": "NOT_SPAM"}}}})
    assert diff.compare(lambda s: s.user("alice").send_text(rooms[s], "fine")).native.status == 200


# -- 2. a module's SynapseError reaches the client as is ---------------------------------------


def test_a_429_synapse_error_with_retry_after_ms_reaches_the_client_as_is(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    diff.script(
        {"s2": {"check_event_for_spam": synapse_error(429, "M_LIMIT_EXCEEDED", "slow down", retry_after_ms=1500)}}
    )
    replies = diff.compare(lambda s: s.user("alice").send_text(rooms[s], "fast"))
    assert diff.native.seen(replies.native) == (
        429,
        {"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 1500},
    )


def test_a_503_synapse_error_with_a_custom_key_reaches_the_client_as_is(diff: Differential) -> None:
    error = synapse_error(503, "ORG_EXAMPLE_MAINTENANCE", "come back later", **{"org.example.until": "noon"})
    diff.script({"s1": {"user_may_create_room": error}})
    replies = diff.compare(lambda s: s.user("alice").create_room())
    assert diff.native.seen(replies.native) == (
        503,
        {"errcode": "ORG_EXAMPLE_MAINTENANCE", "error": "come back later", "org.example.until": "noon"},
    )


def test_on_create_room_synapse_errors_reach_the_client_as_is(diff: Differential) -> None:
    error = synapse_error(409, "ORG_EXAMPLE_TAKEN", "pick another topic", **{"org.example.hint": "x"})
    diff.script({"s2": {"on_create_room": error}})
    replies = diff.compare(lambda s: s.user("alice").create_room())
    assert diff.native.seen(replies.native) == (
        409,
        {"errcode": "ORG_EXAMPLE_TAKEN", "error": "pick another topic", "org.example.hint": "x"},
    )


def test_an_on_create_room_error_status_outside_400_to_599_is_refused_by_glia(diff: Differential) -> None:
    """glia-only expectation (a documented difference): a module's SynapseError with status
    200 or 302 is not an answer, so `on_create_room`'s failure policy refuses the room as
    Synapse refuses it for any other exception. Synapse itself sends what the module said."""
    for status in (200, 302):
        diff.script({"s1": {"on_create_room": synapse_error(status, "M_UNKNOWN", "odd status")}})
        replies = diff.on_both(lambda s: s.user("alice").create_room())
        assert diff.glia_side.seen(replies.glia) == (
            403,
            {"errcode": "M_UNKNOWN", "error": "Room creation forbidden with these parameters"},
        ), (status, replies.glia)
        # Natively the client gets the module's status (302 without a Location) and its
        # error as the body, and no room is made: a "success" that is not one.
        assert (replies.native.status, replies.native.body) == (
            status,
            {"errcode": "M_UNKNOWN", "error": "odd status"},
        ), (status, replies.native)


# -- 3. the deprecated plain-string spam answer -------------------------------------------------


def test_the_plain_string_spam_answer_is_the_clients_error_text(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    for value in ({"message": "no links please"}, {"string": "no links please"}):
        diff.script({"s2": {"check_event_for_spam": {"return": value}}})
        replies = diff.compare(lambda s: s.user("alice").send_text(rooms[s], "http://spam"))
        assert diff.native.seen(replies.native) == (403, {"errcode": "M_FORBIDDEN", "error": "no links please"})
    assert diff.on_both(lambda s: bodies(s, "alice", rooms[s])) == Both([], [])


# -- 4. on_create_room's return value is ignored --------------------------------------------


def test_on_create_room_returning_false_creates_the_room(diff: Differential) -> None:
    diff.script({"s1": {"on_create_room": {"return": False}}, "s2": {"on_create_room": {"return": True}}})
    replies = diff.compare(lambda s: s.user("alice").create_room(name="returned False"))
    assert replies.native.status == 200
    assert diff.same_calls("on_create_room") == ["s1", "s2"]


def test_on_create_room_raising_refuses_the_room_with_synapses_message(diff: Differential) -> None:
    diff.script({"s2": {"on_create_room": RAISE}})
    replies = diff.compare(lambda s: s.user("alice").create_room())
    assert diff.native.seen(replies.native) == (
        403,
        {"errcode": "M_UNKNOWN", "error": "Room creation forbidden with these parameters"},
    )


def test_on_create_room_edits_reach_the_created_room(diff: Differential) -> None:
    diff.script({"s1": {"on_create_room": {"return": {"request_content": {"name": "renamed by s1"}}}}})
    rooms = room_of(diff, "alice", name="original")

    def name(side: Side) -> Any:
        return side.user("alice").request("GET", room_path(rooms[side], "state/m.room.name/")).body

    assert diff.on_both(name) == Both({"name": "renamed by s1"}, {"name": "renamed by s1"})


# -- 5. web resources match paths as Synapse does ----------------------------------------------


def test_a_web_resource_at_a_path_does_not_answer_below_it(diff: Differential) -> None:
    def get(side: Side, path: str) -> tuple[int, Any]:
        status, _, body = http_request("GET", side.synapse.url + path)
        return status, (json.loads(body) if status == 200 else None)

    assert diff.on_both(lambda s: get(s, DEMO_PATH + "?name=alice")) == Both(
        (200, {"hello": "alice"}), (200, {"hello": "alice"})
    )
    for below in ("/", "/x", "/x/y"):
        # Twisted's "No Such Resource" page on both: the bridge's proxy is not a leaf either.
        pages = diff.on_both(lambda s, below=below: http_request("GET", s.synapse.url + DEMO_PATH + below))
        assert pages.native[0] == pages.glia[0] == 404, below
        assert pages.native[2] == pages.glia[2] and b"No Such Resource" in pages.native[2], below


# -- 7. invoke: sequential ------------------------------------------------------------------------


def test_a_sequential_module_is_not_invoked_after_a_deny_as_in_synapse(diff: Differential) -> None:
    inviter, invitee = fresh("inviter"), fresh("invitee")
    diff.on_both(lambda s: s.user(invitee))
    rooms = room_of(diff, inviter)
    diff.script({"s1": {"user_may_invite": deny()}})
    replies = diff.compare(lambda s: s.user(inviter).invite(rooms[s], s.mxid(invitee)))
    assert diff.native.seen(replies.native) == (
        403,
        {"errcode": "M_FORBIDDEN", "error": "Invites have been disabled on this server"},
    )
    assert diff.same_calls("user_may_invite") == ["s1"]  # s2 never asked, on either side


def test_a_parallel_module_is_invoked_after_a_deny_unlike_in_synapse(diff: Differential) -> None:
    """Documented difference: s2 is `invoke: parallel` for user_may_create_room, so glia asks
    it at once even though s1's deny decides; its answer is ignored."""
    diff.script({"s1": {"user_may_create_room": deny()}, "s2": {"user_may_create_room": RAISE}})
    replies = diff.compare(lambda s: s.user("alice").create_room())
    assert diff.native.seen(replies.native) == (
        403,
        {"errcode": "M_FORBIDDEN", "error": "You are not permitted to create rooms"},
    )
    assert diff.native.called("user_may_create_room") == ["s1"]
    diff.wait_for_calls("user_may_create_room", 2, [diff.glia_side])
    assert sorted(diff.glia_side.called("user_may_create_room")) == ["s1", "s2"]  # at once: either may log first


# -- the new callbacks --------------------------------------------------------------------------

MEDIA_CONFIG = "/_matrix/client/v1/media/config"


def test_the_media_config_comes_from_the_first_module_with_a_non_empty_answer(diff: Differential) -> None:
    def config(side: Side) -> Any:
        reply = side.user("alice").request("GET", MEDIA_CONFIG)
        assert reply.status == 200, (side.label, reply)
        return reply.body

    default = diff.on_both(config)
    assert default.native == default.glia and "m.upload.size" in default.native
    diff.script(
        {
            "s1": {"get_media_config_for_user": {"return": {"dict": {}}}},  # empty: no answer
            "s2": {"get_media_config_for_user": {"return": {"dict": {"m.upload.size": 4242}}}},
        }
    )
    assert diff.on_both(config) == Both({"m.upload.size": 4242}, {"m.upload.size": 4242})
    assert diff.same_calls("get_media_config_for_user") == ["s1", "s2"]


def test_an_upload_the_module_does_not_allow_is_refused_with_413(diff: Differential) -> None:
    for refusal in (False, None):  # None denies too (spec §7)
        diff.script({"s1": {"is_user_allowed_to_upload_media_of_size": {"return": refusal}}})
        replies = diff.compare(lambda s: upload(s.user("alice"), b"x" * 64))
        assert diff.native.seen(replies.native) == (
            413,
            {"errcode": "M_TOO_LARGE", "error": "Upload request body is too large"},
        ), refusal
        calls = diff.on_both(lambda s: [c["args"] for c in s.calls("is_user_allowed_to_upload_media_of_size")])
        assert calls.native == calls.glia == [{"user_id": "@alice:HS", "size": 64}]


def test_an_upload_over_a_modules_limit_is_refused_and_the_module_told(diff: Differential) -> None:
    user = fresh("uploader")
    limit = {"max_bytes": 100, "time_period_ms": 3_600_000}
    diff.script({"s1": {"get_media_upload_limits_for_user": {"return": {"upload_limits": [limit]}}}})
    assert diff.compare(lambda s: upload(s.user(user), b"a" * 60)).native.status == 200
    replies = diff.compare(lambda s: upload(s.user(user), b"b" * 60))
    assert (replies.native.status, replies.native.errcode) == (403, "M_USER_LIMIT_EXCEEDED")
    assert replies.native.body["error"] == "Media upload limit exceeded"
    diff.wait_for_calls("on_media_upload_limit_exceeded", 1)
    told = diff.on_both(lambda s: [c["args"] for c in s.calls("on_media_upload_limit_exceeded")])
    expected = {
        "user_id": f"@{user}:HS",
        "limit": {**limit, "info_uri": None, "can_upgrade": False},
        "sent_bytes": 60,
        "attempted_bytes": 60,
    }
    assert told == Both([expected], [expected])


def test_the_media_spam_checker_sees_the_files_bytes(diff: Differential) -> None:
    diff.script(
        {
            "s1": {
                "check_media_file_for_spam": {
                    "if": {"arg": "file.content", "contains": "EVIL-MARKER"},
                    "then": deny("M_FORBIDDEN"),
                }
            }
        }
    )
    clean = b"just a cat picture " * 10
    assert diff.compare(lambda s: upload(s.user("alice"), clean)).native.status == 200
    replies = diff.compare(lambda s: upload(s.user("alice"), b"header EVIL-MARKER trailer"))
    assert diff.native.seen(replies.native) == (400, {"errcode": "M_UNKNOWN", "error": "Bad content"})
    seen = diff.on_both(lambda s: [c["args"]["file"] for c in s.calls("check_media_file_for_spam")])
    assert seen.native == seen.glia
    assert [f["length"] for f in seen.native] == [len(clean), len(b"header EVIL-MARKER trailer")]


def test_the_media_spam_checker_sees_only_the_first_bytes_through_glia(diff: Differential) -> None:
    """Documented difference: the bridge sends the first `media_bytes` (default 512 KiB) of a
    file, so a marker beyond them is seen natively but not through glia."""
    diff.script(
        {
            "s1": {
                "check_media_file_for_spam": {"if": {"arg": "file.content", "contains": "LATE-MARKER"}, "then": deny()}
            }
        }
    )
    content = b"\0" * (600 * 1024) + b"LATE-MARKER"
    replies = diff.on_both(lambda s: upload(s.user("alice"), content))
    assert diff.native.seen(replies.native) == (400, {"errcode": "M_UNKNOWN", "error": "Bad content"})
    assert replies.glia.status == 200, replies.glia
    # The hosted module reads a file holding the bytes the bridge sent: the first 512 KiB.
    seen = diff.glia_side.calls("check_media_file_for_spam")[0]["args"]["file"]
    assert seen["length"] == 512 * 1024


def test_a_ratelimit_override_lifts_the_invite_limit(diff: Differential) -> None:
    invitees = [fresh("guest") for _ in range(3)]
    diff.on_both(lambda s: [s.user(i) for i in invitees])

    def invite_three(inviter: str) -> Both[list[int]]:
        rooms = room_of(diff, inviter)
        results: Both[list[int]] = Both([], [])
        for invitee in invitees:
            replies = diff.compare(
                lambda s, i=invitee: s.user(inviter).invite(rooms[s], s.mxid(i)), ignore=("retry_after_ms",)
            )
            results.native.append(replies.native.status)
            results.glia.append(replies.glia.status)
        return results

    limited = invite_three(fresh("limited"))
    assert limited.native == [200, 200, 429]  # rc_invites.per_issuer: burst of 2
    lifted = fresh("lifted")
    override = {"return": {"ratelimit": {"per_second": 100.0, "burst_count": 100}}}
    diff.script(
        {
            "s1": {"get_ratelimit_override_for_user": {"return": None}},  # no opinion: s2 decides
            "s2": {"get_ratelimit_override_for_user": {"if": {"arg": "user_id", "contains": lifted}, "then": override}},
        }
    )
    assert invite_three(lifted).native == [200, 200, 200]
    limiters = diff.on_both(
        lambda s: sorted({c["args"]["limiter_name"] for c in s.calls("get_ratelimit_override_for_user")})
    )
    assert limiters.native == limiters.glia == ["rc_invites.per_issuer", "rc_invites.per_room", "rc_invites.per_user"]


def test_account_data_changes_are_told_to_the_module(diff: Differential) -> None:
    rooms = room_of(diff, "alice")

    def put(side: Side, path: str, content: dict[str, Any]) -> Reply:
        return side.user("alice").request("PUT", f"/_matrix/client/v3/user/{quote(side.mxid('alice'))}/{path}", content)

    diff.compare(lambda s: put(s, "account_data/org.example.settings", {"theme": "dark"}))
    diff.compare(lambda s: put(s, f"rooms/{quote(rooms[s])}/account_data/org.example.pin", {"pinned": True}))
    diff.wait_for_calls("on_account_data_updated", 2)
    told = diff.on_both(
        lambda s: [
            {**c["args"], "room_id": c["args"]["room_id"] and c["args"]["room_id"] == rooms[s]}
            for c in s.calls("on_account_data_updated")
        ]
    )
    assert (
        told.native
        == told.glia
        == [
            {
                "user_id": "@alice:HS",
                "room_id": None,
                "account_data_type": "org.example.settings",
                "content": {"theme": "dark"},
            },
            {
                "user_id": "@alice:HS",
                "room_id": True,
                "account_data_type": "org.example.pin",
                "content": {"pinned": True},
            },
        ]
    )


def test_unsigned_fields_from_modules_appear_on_a_fetched_event_under_synapses_own(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    sent = diff.on_both(lambda s: s.user("alice").send_text(rooms[s], "tag me").body["event_id"])
    diff.script(
        {
            "s1": {"add_field_to_unsigned": {"return": {"dict": {"org.example.tag": "s1", "org.example.s1": 1}}}},
            "s2": {
                "add_field_to_unsigned": {
                    "return": {"dict": {"org.example.tag": "s2", "transaction_id": "module", "age": -1}}
                }
            },
        }
    )

    def unsigned(side: Side) -> dict[str, Any]:
        reply = side.user("alice").event(rooms[side], sent[side])
        assert reply.status == 200, (side.label, reply)
        return reply.body["unsigned"]

    seen = diff.on_both(unsigned)
    for side in diff.sides:
        fields = seen[side]
        assert fields["org.example.tag"] == "s2" and fields["org.example.s1"] == 1, (side.label, fields)
        assert fields["transaction_id"] != "module" and fields["age"] >= 0, (side.label, fields)  # Synapse's win
    assert set(seen.native) == set(seen.glia)
    assert diff.same_calls("add_field_to_unsigned") == ["s1", "s2"]


def new_callback_actions() -> dict[str, Callable[[Differential, Side], Reply]]:
    """A client action that reaches each new callback (spec §3.6 to §3.9)."""

    def invite(diff: Differential, side: Side) -> Reply:
        inviter, invitee = fresh("inviter"), fresh("invitee")
        room = side.user(inviter).create_room().body["room_id"]
        side.user(invitee)
        return side.user(inviter).invite(room, side.mxid(invitee))

    def fetch_event(diff: Differential, side: Side) -> Reply:
        room = side.user("alice").create_room().body["room_id"]
        event_id = side.user("alice").send_text(room, "fetch me").body["event_id"]
        return side.user("alice").event(room, event_id)

    def account_data(diff: Differential, side: Side) -> Reply:
        path = f"/_matrix/client/v3/user/{quote(side.mxid('alice'))}/account_data/org.example.raise"
        return side.user("alice").request("PUT", path, {"k": 1})

    return {
        "get_media_config_for_user": lambda diff, side: side.user("alice").request("GET", MEDIA_CONFIG),
        "is_user_allowed_to_upload_media_of_size": lambda diff, side: upload(side.user("alice"), b"x"),
        "get_media_upload_limits_for_user": lambda diff, side: upload(side.user("alice"), b"x"),
        "get_ratelimit_override_for_user": invite,
        "add_field_to_unsigned": fetch_event,
        "on_account_data_updated": account_data,
    }


#: What the client sees when the module raises: 500 (the exception propagates), except for
#: on_account_data_updated, whose exceptions Synapse logs.
RAISING_NEW_CALLBACK_STATUS = {name: 500 for name in new_callback_actions()} | {"on_account_data_updated": 200}


@pytest.mark.parametrize("callback", list(new_callback_actions()))
def test_a_new_callback_that_raises_is_handled_as_synapse_handles_it(diff: Differential, callback: str) -> None:
    diff.on_both(lambda s: s.user("alice"))
    diff.script({"s1": {callback: RAISE}})
    replies = diff.compare(lambda s: new_callback_actions()[callback](diff, s))
    assert replies.native.status == RAISING_NEW_CALLBACK_STATUS[callback], replies.native


def test_a_media_upload_limit_notification_that_raises_replaces_the_refusal_with_500(diff: Differential) -> None:
    user = fresh("uploader")
    limit = {"max_bytes": 10, "time_period_ms": 3_600_000}
    diff.script(
        {
            "s1": {
                "get_media_upload_limits_for_user": {"return": {"upload_limits": [limit]}},
                "on_media_upload_limit_exceeded": RAISE,
            }
        }
    )
    replies = diff.compare(lambda s: upload(s.user(user), b"c" * 60))
    assert diff.native.seen(replies.native) == INTERNAL_ERROR


def test_a_background_update_started_by_an_admin_asks_the_controller(diff: Differential) -> None:
    admin = diff.on_both(lambda s: s.user("admin", admin=True))
    job = {"job_name": "populate_stats_process_rooms"}
    diff.compare(lambda s: admin[s].request("POST", "/_synapse/admin/v1/background_updates/start_job", job))
    diff.wait_for_calls("on_update", 1, where=lambda c: c["args"]["update_name"] == job["job_name"])
    updates = diff.on_both(
        lambda s: [c["args"] for c in s.calls("on_update") if c["args"]["update_name"] == job["job_name"]][:1]
    )
    assert (
        updates.native
        == updates.glia
        == [{"update_name": "populate_stats_process_rooms", "database_name": "master", "one_shot": False}]
    )
