"""One scripted list of client actions, run against a single Synapse process and against the
worker deployment with the same glia config, so that what a client sees and what glia decided
can be compared step by step.

Each step is sent to one process: `Run.client` takes them in turn (main, worker1, worker2,
main, ...), as a load balancer in front of generic workers spreads client requests (every
endpoint the scenario uses is one Synapse's worker docs let a generic worker serve);
registration goes through the shared-secret admin API, which the main process serves. On a
single process every step goes to it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from differential import DEMO_PATH, Side
from harness import Client, Reply, http_request, json_or_raw
from worker_glia import BANNED, FORBIDDEN_WORD

#: The docs' demo resource, which the `demo` module serves through the bridge, asked to greet.
HELLO = f"{DEMO_PATH}?name=workers"
#: Everyone the scenario registers (evilguy, spammer, mallory and expired are named in glia's
#: config: the demo module, the NATS-placed list, user_restrictions, account_expiry).
USERS = ("alice", "bob", "evilguy", "spammer", "mallory", "expired", f"{BANNED}1")


@dataclass
class Run:
    """The scenario on one deployment: its side (registration, the users) and the client
    listeners steps are sent to, in turn."""

    side: Side
    urls: list[str]
    rooms: dict[str, str] = field(default_factory=dict)
    step: int = 0

    def url(self) -> str:
        """The process the current step goes to."""
        return self.urls[self.step % len(self.urls)]

    def client(self, localpart: str) -> Client:
        """`localpart`'s client, sending through the current step's process."""
        user = self.side.user(localpart)
        return Client(self.url(), user.token, user.user_id)

    def register(self, localpart: str) -> Reply:
        """Registers `localpart` through the main process (kept for later steps)."""
        reply = self.side.synapse.try_register(localpart)
        if reply.status == 200:
            self.side.users[localpart] = Client(
                self.side.synapse.url, reply.body["access_token"], reply.body["user_id"]
            )
        return reply

    def create(self, localpart: str, name: str) -> Reply:
        """`localpart` creates a public room, remembered as `name` when it is created."""
        reply = self.client(localpart).create_room(preset="public_chat")
        if reply.status == 200:
            self.rooms[name] = reply.body["room_id"]
        return reply

    def get(self, path: str) -> Reply:
        """An unauthenticated GET on the current step's process."""
        status, headers, body = http_request("GET", self.url() + path)
        return Reply(status, json_or_raw(body), headers)


def displayname(run: Run, localpart: str) -> Reply:
    user = run.client(localpart)
    path = f"/_matrix/client/v3/profile/{quote(user.user_id)}/displayname"
    return user.request("PUT", path, {"displayname": f"{localpart} the tester"})


#: A step: its name, the status it answers on a single process, and what it does.
Step = tuple[str, int, Callable[[Run], Reply]]

#: The scenario: allows and denies of built-in, NATS-placed and hosted modules.
STEPS: list[Step] = [
    *[(f"register {user}", 200, lambda r, u=user: r.register(u)) for user in USERS],  # type: ignore[misc]
    ("alice sets her display name", 200, lambda r: displayname(r, "alice")),
    ("evilguy creates a room (demo denies)", 403, lambda r: r.create("evilguy", "evil")),
    ("alice creates a room", 200, lambda r: r.create("alice", "main")),
    ("mallory creates a room", 200, lambda r: r.create("mallory", "mallory")),
    (
        "mallory invites bob (user_restrictions denies)",
        403,
        lambda r: r.client("mallory").invite(r.rooms["mallory"], r.side.mxid("bob")),
    ),
    ("alice invites bob", 200, lambda r: r.client("alice").invite(r.rooms["main"], r.side.mxid("bob"))),
    ("bob joins", 200, lambda r: r.client("bob").join(r.rooms["main"])),
    ("a banned user joins (the hosted module denies)", 403, lambda r: r.client(f"{BANNED}1").join(r.rooms["main"])),
    ("spammer joins", 200, lambda r: r.client("spammer").join(r.rooms["main"])),
    ("alice says hello", 200, lambda r: r.client("alice").send_text(r.rooms["main"], "hello")),
    (
        "alice offers followers (message_policy denies)",
        403,
        lambda r: r.client("alice").send_text(r.rooms["main"], "buy followers"),
    ),
    (
        "spammer says hi (the NATS-placed module denies)",
        403,
        lambda r: r.client("spammer").send_text(r.rooms["main"], "hi"),
    ),
    (
        "bob swears (the hosted module's rule refuses)",
        403,
        lambda r: r.client("bob").send_text(r.rooms["main"], FORBIDDEN_WORD),
    ),
    ("bob says hello", 200, lambda r: r.client("bob").send_text(r.rooms["main"], "hello")),
    ("expired asks who they are (account_expiry)", 403, lambda r: r.client("expired").whoami()),
    ("alice asks who she is", 200, lambda r: r.client("alice").whoami()),
    *[(f"the demo web resource, {i + 1}", 200, lambda r: r.get(HELLO)) for i in range(3)],
]


@dataclass(frozen=True)
class Seen:
    """What a client saw of one step: status, and for errors the normalised body; for the web
    resource its body too."""

    step: str
    status: int
    body: Any


def play(run: Run, steps: list[Step] = STEPS) -> list[Seen]:
    """Runs every step on `run`'s deployment, in order; what the client saw of each."""
    seen: list[Seen] = []
    for name, _, action in steps:
        reply = action(run)
        status, body = run.side.seen(reply)
        if name.startswith("the demo web resource"):
            body = reply.body
        seen.append(Seen(name, status, body))
        run.step += 1
    return seen


# -- a steady stream of requests -------------------------------------------------------------


@dataclass
class Answer:
    """One request of a stream and its answer (`status` None: no HTTP answer, `error` says why)."""

    index: int
    url: str
    text: str
    status: int | None
    errcode: str | None = None
    event_id: str | None = None
    error: str | None = None
    at: float = 0.0


class Traffic:
    """Messages sent one after the other, in a thread, through each of `urls` in turn, into
    `room` as `user`, until stopped: every `spam_every`-th round through `urls` is of
    messages glia's message_policy refuses. A request that takes its time (a process restarting holds it)
    is waited for up to `timeout` seconds."""

    def __init__(self, user: Client, room: str, urls: list[str], spam_every: int = 3, timeout: float = 120) -> None:
        self.user, self.room, self.urls = user, room, urls
        self.spam_every, self.timeout = spam_every, timeout
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 10)

    def answered_since(self, moment: float) -> list[Answer]:
        """The requests answered after `moment` (a `time.monotonic()`)."""
        return [a for a in list(self.answers) if a.at > moment]

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            url = self.urls[index % len(self.urls)]
            # Every process gets the spam in its turn: whole rounds through `urls` are spam.
            spam = (index // len(self.urls)) % self.spam_every == self.spam_every - 1
            text = "buy followers" if spam else f"tick {index}"
            self.answers.append(self._send(index, url, text))
            index += 1

    def _send(self, index: int, url: str, text: str) -> Answer:
        client = Client(url, self.user.token, self.user.user_id)
        headers = {"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"}
        body = {"msgtype": "m.text", "body": text}
        try:
            status, _, raw = http_request("PUT", url + client.send_path(self.room), body, headers, self.timeout)
        except OSError as e:
            return Answer(index, url, text, None, error=repr(e), at=time.monotonic())
        reply = Reply(status, json_or_raw(raw))
        event_id = reply.body.get("event_id") if isinstance(reply.body, dict) else None
        return Answer(index, url, text, status, reply.errcode, event_id, at=time.monotonic())
