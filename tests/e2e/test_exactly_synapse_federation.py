"""Exactly Synapse over federation (issue 10): a third, plain homeserver ("remote") federates
over TLS on loopback with Synapse native and with Synapse through glia (differential.py),
and what the local users and the remote user see must be the same on both.

- a spam checker that raises on an inbound federated event: the event is refused, no local
  user ever sees it;
- a spam checker that denies one: the event is soft-failed, no local user sees it;
- a federated invite: `federated_user_may_invite`, then `user_may_invite` — each module's
  `user_may_invite` runs exactly once per invite (the fall-through happens on one side only);
- events delivered to the remote server are told to `on_event_delivered_over_federation`.

An inbound event that is refused leaves no trace a client can wait for, so each scenario
sends a harmless event after it and waits for that one: once it is visible, the refused one
has been processed (the remote sends a room's events in order).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from differential import Both, Differential, Side, fresh
from harness import Client, Reply, wait_until

RAISE = {"raise": {"exception": "the module broke"}}


def shared_room(diff: Differential, remote_user: str) -> Both[str]:
    """A public room of alice on each side that `remote_user` (on the remote server) joined."""

    def make(side: Side) -> str:
        room_id = side.user("alice").create_room(preset="public_chat").body["room_id"]
        joined = diff.remote.user(remote_user).request(
            "POST", f"/_matrix/client/v3/join/{quote(room_id)}?server_name={quote(side.server_name)}", {}
        )
        assert joined.status == 200, (side.label, joined)
        return room_id

    return diff.on_both(make)


def bodies(side: Side, client: Client, room_id: str) -> list[str]:
    return [body for _, body in client.message_bodies(room_id)]


def wait_until_seen(diff: Differential, side: Side, room_id: str, body: str) -> None:
    """Waits until alice on `side` sees a message with `body`."""
    wait_until(
        lambda: body in bodies(side, side.user("alice"), room_id),
        30,
        f"{body!r} reaching alice on {side.label}",
        lambda: f"{side.log_tail()}\n{diff.remote.log_tail()}",
    )


def spam_check_on(marker: str, action: dict[str, Any]) -> dict[str, Any]:
    """s1's `check_event_for_spam`: `action` for messages containing `marker`."""
    return {"s1": {"check_event_for_spam": {"if": {"arg": "event.content.body", "contains": marker}, "then": action}}}


def send_then_barrier(diff: Differential, rita: str, rooms: Both[str], refused: str) -> str:
    """rita sends `refused`, then (once both sides have checked it) a harmless message, and
    waits until alice sees the harmless one on both sides; returns the harmless one."""
    harmless = fresh("all clear")
    for side in diff.sides:
        assert diff.remote.user(rita).send_text(rooms[side], refused).status == 200
    diff.wait_for_calls("check_event_for_spam", 1, where=lambda c: c["args"]["event"]["content"].get("body") == refused)
    for side in diff.sides:
        assert diff.remote.user(rita).send_text(rooms[side], harmless).status == 200
    for side in diff.sides:
        wait_until_seen(diff, side, rooms[side], harmless)
    return harmless


def test_an_inbound_event_a_spam_checker_raises_on_is_refused(diff: Differential) -> None:
    """Synapse refuses the event: the remote's transaction gets an error for it (and later
    events that name it as a parent fail too, as Synapse fetches it again and the module
    raises again), so the barrier here is the remote's record of that error."""
    rita = fresh("rita")
    rooms = shared_room(diff, rita)
    diff.script(spam_check_on("RAISE-ME", RAISE))
    sent = diff.on_both(lambda s: diff.remote.user(rita).send_text(rooms[s], "RAISE-ME please").body["event_id"])
    for side in diff.sides:
        wait_until(
            lambda side=side: f"Remote returned error for {sent[side]}" in diff.remote.synapse.log(),
            30,
            f"the remote learning that {side.label} refused its event",
            lambda: diff.remote.log_tail(),
        )
    assert diff.on_both(lambda s: bodies(s, s.user("alice"), rooms[s])) == Both([], [])
    replies = diff.compare(lambda s: s.user("alice").event(rooms[s], sent[s]), ignore=("error",))
    assert (replies.native.status, replies.native.errcode) == (404, "M_NOT_FOUND")
    assert diff.same_calls("check_event_for_spam") == ["s1"]
    # The remote's own user still has it: it was refused, not redacted.
    assert "RAISE-ME please" in bodies(diff.remote, diff.remote.user(rita), rooms.native)


def test_an_inbound_event_a_spam_checker_denies_is_soft_failed(diff: Differential) -> None:
    rita = fresh("rita")
    rooms = shared_room(diff, rita)
    diff.script(spam_check_on("DENY-ME", {"return": {"codes": "M_FORBIDDEN"}}))
    harmless = send_then_barrier(diff, rita, rooms, "DENY-ME please")
    seen = diff.on_both(lambda s: bodies(s, s.user("alice"), rooms[s]))
    assert seen.native == seen.glia == [harmless]

    def event_ids(side: Side, client: Client, room_id: str) -> set[str]:
        reply = client.messages(room_id)
        return {e["event_id"] for e in reply.body["chunk"]}

    # Soft-failed, not refused: the remote's later event names the denied one as its parent,
    # and the local server accepted it all the same.
    for side in diff.sides:
        remote_ids = event_ids(diff.remote, diff.remote.user(rita), rooms[side])
        local_ids = event_ids(side, side.user("alice"), rooms[side])
        assert len(remote_ids - local_ids) == 1, (side.label, remote_ids - local_ids)


def test_a_federated_invite_asks_each_modules_user_may_invite_exactly_once(diff: Differential) -> None:
    rita, bob = fresh("rita"), fresh("bob")
    diff.on_both(lambda s: s.user(bob))
    room = diff.remote.user(rita).create_room().body["room_id"]

    def invite(side: Side) -> Reply:
        return diff.remote.user(rita).invite(room, side.mxid(bob))

    replies = diff.compare(invite)
    assert replies.native.status == 200
    assert diff.same_calls("federated_user_may_invite") == ["s1", "s2"]
    assert diff.same_calls("user_may_invite") == ["s1", "s2"]
    calls = diff.on_both(lambda s: [c["args"] for c in s.calls("user_may_invite")])
    assert calls.native == calls.glia
    assert calls.native[0] == {"inviter": diff.remote.mxid(rita), "invitee": f"@{bob}:HS", "room_id": room}

    def invites(side: Side) -> list[str]:
        sync = side.user(bob).request("GET", "/_matrix/client/v3/sync?timeout=0")
        return list(sync.body.get("rooms", {}).get("invite", {}))

    assert diff.on_both(invites) == Both([room], [room])


def test_a_federated_invite_refused_by_a_module_is_refused_to_the_remote(diff: Differential) -> None:
    rita, carol, dave = fresh("rita"), fresh("carol"), fresh("dave")
    diff.on_both(lambda s: [s.user(carol), s.user(dave)])
    room = diff.remote.user(rita).create_room().body["room_id"]

    # s2's user_may_invite denies: the fall-through from federated_user_may_invite reached it.
    diff.script({"s2": {"user_may_invite": {"return": {"codes": "M_LIMIT_EXCEEDED", "fields": {"org.x": 1}}}}})
    replies = diff.compare(lambda s: diff.remote.user(rita).invite(room, s.mxid(carol)))
    assert (replies.native.status, replies.native.errcode) == (403, "M_LIMIT_EXCEEDED")
    assert diff.same_calls("federated_user_may_invite") == ["s1", "s2"]
    assert diff.same_calls("user_may_invite") == ["s1", "s2"]

    # s1's federated_user_may_invite denies: user_may_invite is not asked at all.
    diff.script({"s1": {"federated_user_may_invite": {"return": {"codes": "M_FORBIDDEN"}}}})
    replies = diff.compare(lambda s: diff.remote.user(rita).invite(room, s.mxid(dave)))
    assert (replies.native.status, replies.native.errcode) == (403, "M_FORBIDDEN")
    assert diff.same_calls("federated_user_may_invite") == ["s1"]
    assert diff.same_calls("user_may_invite") == []


def test_events_delivered_to_the_remote_server_are_told_to_the_module(diff: Differential) -> None:
    rita = fresh("rita")
    rooms = shared_room(diff, rita)
    diff.clear_calls()
    diff.on_both(lambda s: s.user("alice").send_text(rooms[s], "over the wire"))

    def delivered(call: dict[str, Any]) -> bool:
        events = call["args"]["delivery"]["events"]
        return any(e.get("content", {}).get("body") == "over the wire" for e in events)

    diff.wait_for_calls("on_event_delivered_over_federation", 1, where=delivered)
    told = diff.on_both(
        lambda s: [
            {
                "server_name": c["args"]["delivery"]["server_name"],
                "method": c["args"]["delivery"]["method"],
                "events": [(e["type"], e["sender"], e["content"]) for e in c["args"]["delivery"]["events"]],
            }
            for c in s.calls("on_event_delivered_over_federation")
            if delivered(c)
        ]
    )
    assert told.native == told.glia
    assert told.native[0]["server_name"] == diff.remote.server_name and told.native[0]["method"] == "/send"
