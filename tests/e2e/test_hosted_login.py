"""Logins through a module's auth checker, natively in Synapse and hosted by glia (issue 24):

- the post-login callback an auth checker returns with the user id (`(user_id, callback)`),
  which Synapse awaits with the login result once the login completes: hosted, the host keeps
  the callable under a handle, the bridge hands Synapse a stand-in that sends the result back
  through glia, and the module's own callable runs where the module runs;
- one login type registered by two modules with different field lists (s1 first with
  `token` and `pin`, s2 later with `token`): Synapse starts, a login carries the later list,
  and both checkers are asked, each given those fields; glia does the same and logs why.

The same scripted modules run on both sides (differential.py); a Matrix client logs in on both
and must see the same thing.
"""

from __future__ import annotations

from typing import Any

from differential import LOGIN_TYPE, Differential, Side
from harness import Reply

INTERNAL_ERROR = (500, {"errcode": "M_UNKNOWN", "error": "Internal server error"})
#: What a login result holds (`LoginResponse`: no refresh token or expiry here).
LOGIN_RESULT_KEYS = ["access_token", "device_id", "home_server", "user_id"]


def login(side: Side, localpart: str, **fields: Any) -> Reply:
    """`POST /login` with the scripted login type and `fields`."""
    body = {"type": LOGIN_TYPE[0], "identifier": {"type": "m.id.user", "user": side.mxid(localpart)}, **fields}
    return side.user(localpart).request("POST", "/_matrix/client/v3/login", body, auth=False)


def displayname(side: Side, localpart: str) -> Any:
    """The user's display name as a client reads it."""
    reply = side.user(localpart).request("GET", f"/_matrix/client/v3/profile/{side.mxid(localpart)}/displayname")
    return reply.body.get("displayname") if reply.status == 200 else reply.status


def accepts(module: str, token: str, post_login: dict[str, Any] | None = None) -> dict[str, Any]:
    """A script for `module`'s check_auth: the user named in the login, for `token`; with a
    post-login callback doing `post_login` when given."""
    answer: dict[str, Any] = {"auth": {"arg": "username"}}
    if post_login is not None:
        answer["post_login"] = post_login
    return {module: {"check_auth": {"if": {"arg": "login_dict.token", "equals": token}, "then": {"return": answer}}}}


def test_the_post_login_callback_is_awaited_with_the_login_result(diff: Differential) -> None:
    diff.on_both(lambda s: s.user("carol"))
    diff.script(accepts("s2", "open sesame", {"displayname": "Carol, logged in"}))
    replies = diff.compare(lambda s: login(s, "carol", token="open sesame"))
    assert replies.native.status == 200, replies
    # The module's callback got the login result (the user, Synapse's keys), and what it set
    # through the ModuleApi is there when the client's login has returned.
    told = diff.on_both(lambda s: s.calls("post_login"))
    expected = [{"module": "s2", "user_id": "@carol:HS", "keys": LOGIN_RESULT_KEYS}]
    assert [dict(c["args"], module=c["module"]) for c in told.native] == expected, told
    assert [dict(c["args"], module=c["module"]) for c in told.glia] == expected, told
    names = diff.on_both(lambda s: displayname(s, "carol"))
    assert (names.native, names.glia) == ("Carol, logged in", "Carol, logged in")
    # A login that gets no callback, or is refused, calls none.
    diff.clear_calls()
    diff.script(accepts("s2", "open sesame"))
    assert diff.compare(lambda s: login(s, "carol", token="open sesame")).native.status == 200
    assert diff.compare(lambda s: login(s, "carol", token="wrong")).native.status == 403
    assert (diff.native.calls("post_login"), diff.glia_side.calls("post_login")) == ([], [])


def test_a_post_login_callback_that_raises_fails_the_login(diff: Differential) -> None:
    diff.on_both(lambda s: s.user("dave"))
    diff.script(accepts("s2", "open sesame", {"raise": "the module's own failure"}))
    replies = diff.compare(lambda s: login(s, "dave", token="open sesame"))
    assert diff.native.seen(replies.native) == INTERNAL_ERROR
    assert diff.same_calls("post_login") == ["s2"]


def test_a_login_type_registered_twice_with_other_fields_logs_in_as_synapse_does(diff: Differential) -> None:
    # s1 registered (token, pin), then s2 (token): a login carries s2's list.
    diff.on_both(lambda s: s.user("erin"))
    diff.script({**accepts("s1", "s1's token"), **accepts("s2", "open sesame")})
    for token in ("s1's token", "open sesame"):
        replies = diff.compare(lambda s, token=token: login(s, "erin", token=token))  # type: ignore[misc]
        assert replies.native.status == 200, (token, replies)
        assert replies.native.body["user_id"] == diff.native.mxid("erin")
        assert replies.glia.body["user_id"] == diff.glia_side.mxid("erin")
    refused = diff.compare(lambda s: login(s, "erin", token="nobody's"))
    assert diff.native.seen(refused.native) == (
        403,
        {"errcode": "M_FORBIDDEN", "error": "Invalid username or password"},
    )
    # s1's `pin` is not asked for, and not passed: each checker gets the later list's fields.
    missing = diff.compare(lambda s: login(s, "erin", pin="1234"))
    assert diff.native.seen(missing.native)[0] == 400
    # s1 accepts first; s2 is asked only when s1 says no one.
    assert diff.same_calls("check_auth") == ["s1", "s1", "s2", "s1", "s2"]
    for side in diff.sides:
        dicts = [c["args"]["login_dict"] for c in side.calls("check_auth")]
        assert all(set(d) == {"token"} for d in dicts), (side.label, dicts)
    # glia says what Synapse does silently.
    log = diff.glia.process.log_path.read_text(errors="replace")
    assert "login type registered again with other fields" in log, diff.glia.process.tail()
