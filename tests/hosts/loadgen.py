"""The "synapse" host's load: decisions sent as the bridge sends them, through its own client.

    loadgen.py --url http://COORD1:8787 --url http://COORD2:8787 --out records.jsonl

Runs the bridge's `GliaClient` (its HTTP/1.1 transport and its failover across coordinators,
`glia_synapse.failover`) on Twisted's reactor, as Synapse does, open loop: `--rate` decisions a
second go out whether or not earlier ones were answered, alternating between the parts under
test (`PATHS`). Each decision has its own request id and the caller's deadline (`--deadline`,
the bridge's `timeout`). One JSON line per decision is appended to `--out` as it ends: its id,
part, `time.monotonic()` when sent and when it ended (the same clock in every namespace), the
coordinator that answered, and its outcome:

- `module`: the part's module decided (its deny, naming it);
- `policy`: glia answered through the module's failure policy (`allow`, no module named);
- `late`: no answer by the deadline (the bridge's `GliaFailure` of kind `timeout`);
- `lost`: no coordinator took it, or an error status (any other `GliaFailure`);
- `wrong`: an answer that is none of these.

Stops sending on SIGTERM, waits for what is in flight (each ends by its deadline), and exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TextIO

from twisted.internet import defer, reactor, task

from glia_synapse.client import GliaClient
from glia_synapse.errors import GliaFailure
from glia_synapse.transport import Pool, parse_address


@dataclass(frozen=True)
class PathUnderTest:
    """One part's decisions: the callback, its arguments, and the module that denies them."""

    part: str
    callback: str
    body: dict[str, Any]
    module: str


#: The parts under test: a Rust module on `glia worker`s, a Python module in standalone
#: Python hosts, both placed on NATS. Each module denies these arguments; its failure policy
#: allows them, so every answer says who gave it.
PATHS = [
    PathUnderTest("worker", "user_may_create_room", {"user_id": "@evilguy:example.com", "room_config": {}}, "demo"),
    PathUnderTest(
        "python",
        "user_may_join_room",
        {"user_id": "@joiner:localhost", "room_id": "!room:localhost", "is_invited": False},
        "domain_rules",
    ),
]


class TaggedPool(Pool):
    """The bridge's pool to one coordinator, noting which requests it answered."""

    answered: ClassVar[dict[str, str]] = {}

    def request(self, method: bytes, path: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> Any:
        headers = list(headers)
        request_id = next(v.decode() for k, v in headers if k == b"X-Request-Id")

        def note(response: Any) -> Any:
            TaggedPool.answered[request_id] = self.address.url
            return response

        return super().request(method, path, headers, body).addCallback(note)


def outcome(path: PathUnderTest, reply: Any) -> str:
    """Who decided `reply`."""
    if isinstance(reply, dict) and reply.get("decision") == "deny" and reply.get("module") == path.module:
        return "module"
    if reply == {"decision": "allow"}:
        return "policy"
    return "wrong"


class Load:
    """Sends decisions and writes their records."""

    def __init__(self, client: GliaClient, deadline: float, out: TextIO) -> None:
        self.client = client
        self.deadline = deadline
        self.out = out
        self.sent = 0
        self.in_flight: set[defer.Deferred[None]] = set()

    def send(self, count: int) -> None:
        """Sends the decisions due (a LoopingCall's step: more than one when the reactor fell
        behind, so the rate holds)."""
        for _ in range(count):
            self.send_one()

    def send_one(self) -> None:
        """Sends the next decision."""
        n, self.sent = self.sent, self.sent + 1
        path = PATHS[n % len(PATHS)]
        d = defer.ensureDeferred(self.decide(f"fm-{n}", path))
        self.in_flight.add(d)
        d.addBoth(lambda _: self.in_flight.discard(d))

    async def decide(self, request_id: str, path: PathUnderTest) -> None:
        """Sends one decision through the bridge's client and records how it ended."""
        sent = time.monotonic()
        detail = ""
        try:
            reply, _ = await self.client.call(path.callback, dict(path.body), request_id, self.deadline)
            result = outcome(path, reply)
            detail = "" if result != "wrong" else json.dumps(reply)[:200]
        except GliaFailure as e:
            result = "late" if e.kind == "timeout" else "lost"
            detail = str(e)[:300]
        record = {
            "id": request_id,
            "part": path.part,
            "sent": sent,
            "done": time.monotonic(),
            "outcome": result,
            "coordinator": TaggedPool.answered.pop(request_id, None),
        }
        if detail:
            record["detail"] = detail
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", required=True, help="a coordinator, in the bridge's order")
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rate", type=float, default=100, help="decisions a second (default 100)")
    parser.add_argument("--deadline", type=float, default=5, help="the bridge's timeout, seconds (default 5)")
    parser.add_argument("--connect-timeout", type=float, default=0.5)
    parser.add_argument("--attempt-timeout", type=float, default=2)
    args = parser.parse_args()
    pools = [TaggedPool(parse_address(url), reactor, args.connect_timeout) for url in args.url]
    client = GliaClient(pools, args.token, reactor, args.attempt_timeout)
    with open(args.out, "a") as out:
        load = Load(client, args.deadline, out)
        sending = task.LoopingCall.withCount(load.send)
        sending.start(1 / args.rate)

        def stop() -> None:
            if sending.running:
                sending.stop()
            done = defer.DeferredList(list(load.in_flight))
            done.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

        signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(stop))  # type: ignore[attr-defined]
        reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
