"""A hosted module's answers read as Synapse reads them (issue 24): values Synapse tests by
identity (`is False`, `is NOT_SPAM`), by type (`isinstance(res, dict)`, `Codes`) or by
Python's truthiness, where reading the value's JSON would differ.

The same scripted module runs inside a real Synapse and in glia's Python host behind the
bridge (differential.py); a Matrix client does the same thing on both and must see the same
thing, and what it sees is also checked against what Synapse's code does with the answer.
"""

from __future__ import annotations

from typing import Any

from differential import APP_SERVICE_ID, APP_SERVICE_SENDER, APP_SERVICE_TOKEN, Both, Differential, Side, fresh
from harness import Client, Reply

MEDIA_CONFIG = "/_matrix/client/v1/media/config"


def room_of(diff: Differential, owner: str) -> Both[str]:
    """A fresh room of `owner` on both homeservers."""

    def create(side: Side) -> str:
        reply = side.user(owner).create_room()
        assert reply.status == 200, (side.label, reply)
        return reply.body["room_id"]

    return diff.on_both(create)


def by_body(cases: dict[str, Any]) -> Any:
    """A script action answering `cases[body]` for a message with that body (nested `if`s),
    and the neutral answer for any other event."""
    action: Any = None
    for body, value in reversed(list(cases.items())):
        action = {"if": {"arg": "event.content.body", "equals": body}, "then": {"return": value}, "else": action}
    return action


def bodies(side: Side, room_id: str) -> list[str]:
    """The bodies of the room's messages as alice sees them, oldest first."""
    return [body for _, body in side.user("alice").message_bodies(room_id)]


# -- check_event_allowed: only `is False` denies, any dict replaces -----------------------------

#: message body -> (s1's answer, status the client gets, body stored, modules asked)
EVENT_ALLOWED: dict[str, tuple[Any, int, str | None, list[str]]] = {
    # Carry on: s2 (neutral, `(True, None)`) is asked, the message is stored as sent.
    "none-none": ({"event_allowed": [None, None]}, 200, "none-none", ["s1", "s2"]),
    "zero-none": ({"event_allowed": [0, None]}, 200, "zero-none", ["s1", "s2"]),
    "empty-none": ({"event_allowed": ["", None]}, 200, "empty-none", ["s1", "s2"]),
    "true-none": ({"event_allowed": [True, None]}, 200, "true-none", ["s1", "s2"]),
    "true-not-a-dict": ({"event_allowed": [True, "not a dict"]}, 200, "true-not-a-dict", ["s1", "s2"]),
    # A dict replaces the event whatever the first element is (unless False); s2 is not asked.
    "none-replacement": (
        {"replace_content": {"msgtype": "m.text", "body": "replaced after None"}, "allowed": None},
        200,
        "replaced after None",
        ["s1"],
    ),
    "zero-replacement": (
        {"replace_content": {"msgtype": "m.text", "body": "replaced after 0"}, "allowed": 0},
        200,
        "replaced after 0",
        ["s1"],
    ),
    # Only False itself denies (403 M_FORBIDDEN), its replacement ignored.
    "false-none": ({"event_allowed": [False, None]}, 403, None, ["s1"]),
    "false-replacement": (
        {"replace_content": {"msgtype": "m.text", "body": "never stored"}, "allowed": False},
        403,
        None,
        ["s1"],
    ),
}


def test_check_event_allowed_is_denied_only_by_false_and_replaced_by_any_dict(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    diff.script({"s1": {"check_event_allowed": by_body({body: case[0] for body, case in EVENT_ALLOWED.items()})}})
    stored: list[str] = []
    wrong: dict[str, str] = {}  # every case is tried, so a failure names all that differ
    for body, (_, status, kept, asked) in EVENT_ALLOWED.items():
        diff.clear_calls()
        try:
            replies = diff.compare(lambda s, body=body: s.user("alice").send_text(rooms[s], body))  # type: ignore[misc]
        except AssertionError as e:
            wrong[body] = str(e).split("\n--- ")[0]
            continue
        seen = diff.native.seen(replies.native)
        if status == 200:
            assert seen == (200, None), (body, seen)
        else:
            denied = {"errcode": "M_FORBIDDEN", "error": "This event is not allowed in this context"}
            assert seen == (403, denied), (body, seen)
        assert diff.same_calls("check_event_allowed") == asked, body
        if kept is not None:
            stored.append(kept)
    assert not wrong, "\n".join(f"{body}: {error}" for body, error in wrong.items())
    assert diff.on_both(lambda s: bodies(s, rooms[s])) == Both(stored, stored)


# -- spam checkers: a dict is neither a Codes nor a string -------------------------------------


def test_a_dict_spam_answer_is_an_invalid_value_not_an_errcode_or_a_message(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    spam = (403, {"errcode": "M_FORBIDDEN", "error": "This message has been rejected as probable spam"})
    for value in ({"errcode": "M_LIMIT_EXCEEDED"}, {"message": "NOT_SPAM"}, {"message": "a module's words"}):
        diff.script({"s1": {"check_event_for_spam": {"return": {"dict": value}}}})
        replies = diff.compare(lambda s: s.user("alice").send_text(rooms[s], "spam?"))
        assert diff.native.seen(replies.native) == spam, value
        assert diff.same_calls("check_event_for_spam") == ["s1"]

    join = (403, {"errcode": "M_FORBIDDEN", "error": "Not allowed to join this room"})
    public = diff.on_both(lambda s: s.user("alice").create_room(preset="public_chat").body["room_id"])
    diff.on_both(lambda s: s.user("bob"))
    diff.script({"s1": {"user_may_join_room": {"return": {"dict": {"errcode": "M_LIMIT_EXCEEDED"}}}}})
    replies = diff.compare(lambda s: s.user("bob").join(public[s]))
    assert diff.native.seen(replies.native) == join


# -- is_user_expired: anything but None decides, read by truthiness ----------------------------


def test_is_user_expired_answers_that_are_not_booleans_are_read_by_truthiness(diff: Differential) -> None:
    user = fresh("ageing")
    diff.on_both(lambda s: s.user(user))

    def expiry(value: Any) -> dict[str, Any]:
        return {"is_user_expired": {"if": {"arg": "user_id", "contains": user}, "then": {"return": value}}}

    for value, status in ((0, 200), ("", 200), (1, 403), ({"string": "yes"}, 403)):
        diff.script({"s1": expiry(value), "s2": expiry(1)})  # s2 would expire the user: not asked
        replies = diff.compare(lambda s: s.user(user).whoami())
        assert replies.native.status == status, (value, replies.native)
        if status == 403:
            assert replies.native.errcode == "ORG_MATRIX_EXPIRED_ACCOUNT"
        asked = diff.on_both(lambda s: [c["module"] for c in s.calls("is_user_expired") if user in str(c["args"])])
        assert asked.native == asked.glia and set(asked.native) == {"s1"}, value


# -- the first truthy answer: a falsy one is no opinion ------------------------------------------


def test_a_falsy_media_config_or_ratelimit_override_is_no_opinion(diff: Differential) -> None:
    def config(side: Side) -> Reply:
        return side.user("alice").request("GET", MEDIA_CONFIG)

    default = diff.compare(config)
    assert default.native.status == 200
    diff.script({"s1": {"get_media_config_for_user": {"return": False}}})
    falsy = diff.compare(config)
    assert falsy.native.body == falsy.glia.body == default.native.body
    assert diff.same_calls("get_media_config_for_user") == ["s1", "s2"]

    inviter, invitee = fresh("inviter"), fresh("invitee")
    rooms = room_of(diff, inviter)
    diff.on_both(lambda s: s.user(invitee))
    diff.script({"s1": {"get_ratelimit_override_for_user": {"return": False}}})
    replies = diff.compare(lambda s: s.user(inviter).invite(rooms[s], s.mxid(invitee)))
    assert replies.native.status == 200
    assert set(diff.same_calls("get_ratelimit_override_for_user")) == {"s1", "s2"}


# -- add_field_to_unsigned: merged with dict.update ----------------------------------------------


def test_unsigned_fields_given_as_key_value_pairs_are_added(diff: Differential) -> None:
    rooms = room_of(diff, "alice")
    sent = diff.on_both(lambda s: s.user("alice").send_text(rooms[s], "tag me").body["event_id"])
    diff.script({"s1": {"add_field_to_unsigned": {"return": [["org.example.pair", 1]]}}})

    def unsigned(side: Side) -> Any:
        reply = side.user("alice").event(rooms[side], sent[side])
        assert reply.status == 200, (side.label, reply)
        return reply.body["unsigned"].get("org.example.pair")

    assert diff.on_both(unsigned) == Both(1, 1)


# -- a Requester's application service -----------------------------------------------------------


def test_on_create_room_sees_the_application_service_the_requester_acts_for(diff: Differential) -> None:
    """Synapse's `Requester` carries the id of the application service acting
    (`app_service_id`); the hosted module's must too."""

    def create(side: Side) -> Reply:
        bot = Client(side.synapse.url, APP_SERVICE_TOKEN, side.mxid(APP_SERVICE_SENDER))
        return bot.create_room()

    assert diff.compare(create).native.status == 200
    seen = diff.on_both(lambda s: [c["args"]["requester"] for c in s.calls("on_create_room")])
    requester = {
        "user_id": f"@{APP_SERVICE_SENDER}:HS",
        "device_id": None,
        "is_guest": False,
        "app_service_id": APP_SERVICE_ID,
    }
    assert seen.native == seen.glia == [requester, requester]  # s1, then s2


# -- a module's soft_failed reaches Synapse's event ----------------------------------------------


def test_an_event_the_module_soft_fails_is_stored_soft_failed_and_not_served(diff: Differential) -> None:
    """A module that sets `event.internal_metadata.soft_failed` in `check_event_for_spam` (and
    answers "not spam") changes Synapse's own event: Synapse persists it soft-failed and serves
    it to no client. The hosted module changes its copy; the host sends the change to the
    bridge over the ModuleApi channel, which sets it on Synapse's event before glia answers."""
    rooms = room_of(diff, "alice")
    diff.script({"s1": {"check_event_for_spam": by_body({"hide me": {"soft_fail": False}})}})
    for body in ("hide me", "show me"):
        assert diff.compare(lambda s, body=body: s.user("alice").send_text(rooms[s], body)).native.status == 200  # type: ignore[misc]
    assert diff.on_both(lambda s: bodies(s, rooms[s])) == Both(["show me"], ["show me"])
