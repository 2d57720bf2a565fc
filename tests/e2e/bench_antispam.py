"""What glia costs in front of a synapse-http-antispam server: a message send through
synapse-http-antispam posting straight to a do-nothing server, against the same module posting to
glia's ingress, whose `http_antispam` module posts to the same server, measured in one run.

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh and
`cargo build --release --workspace --bins`):

    GLIA_BIN=target/release/glia tests/e2e/.venv/bin/python tests/e2e/bench_antispam.py --sends 300

Three Synapses run side by side (same version and config, SQLite): `none` (no modules),
`direct` (synapse-http-antispam with `check_event_for_spam` enabled, `base_url` the do-nothing
server) and `via-glia` (the same module, `base_url` glia's ingress; glia's only module is
`http_antispam` to the same server). The do-nothing server is `glia-antispam-fake nothing`
(found beside `GLIA_BIN`). Each user sends `--sends` messages with `PUT /rooms/{id}/send` over a
kept-alive connection, the three interleaved round by round so machine load drifts hit all alike,
after `--warmup` unmeasured sends each.

Then, with `--posts N` (default 2000), the hop alone, without Synapse: the module's
`check_event_for_spam` body POSTed over a kept-alive connection to the do-nothing server, against
the same POST to glia's ingress (which relays it to that server), interleaved.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from antispam import INGRESS_PATH, AntispamFake, antispam_module, fake_binary
from bench_send import Sender, interleaved_sends, percentile, report, timed
from harness import GLIA_TOKEN, Glia, Synapse, free_port, glia_binary

CALLBACKS = ["check_event_for_spam"]


#: A message event as synapse-http-antispam sends it (client format, canonical JSON).
EVENT_BODY = json.dumps(
    {
        "event": {
            "content": {"body": "benchmark message", "msgtype": "m.text"},
            "event_id": "$Hq2e9v1-CnbxV4eS0gCkKk0yXb3yJf7oWmQ4T3zR8aA",
            "origin_server_ts": 1764000000000,
            "room_id": "!OqbCjBvKdrvNeYjZpP:localhost",
            "sender": "@bench_direct:localhost",
            "type": "m.room.message",
            "unsigned": {"age_ts": 1764000000000},
        }
    },
    sort_keys=True,
    separators=(",", ":"),
)


class Poster:
    """POSTs the event body to one URL over one kept-alive connection, timing each."""

    def __init__(self, name: str, url: str, token: str | None = None) -> None:
        self.name = name
        host, _, path = url.split("://", 1)[1].partition("/")
        self.path = f"/{path}/check_event_for_spam"
        self.conn = http.client.HTTPConnection(host, timeout=30)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.samples_ms: list[float] = []

    def post(self, record: bool = True) -> None:
        """One POST, timed."""
        elapsed = timed(self.conn, self.name, "POST", self.path, EVENT_BODY, self.headers)
        if record:
            self.samples_ms.append(elapsed)


def hop(urls: dict[str, str], count: int) -> None:
    """The POST straight to the do-nothing server against the POST to glia, interleaved."""
    posters = [Poster("direct", urls["direct"]), Poster("via-glia", urls["via-glia"], GLIA_TOKEN)]
    for poster in posters:
        for _ in range(100):
            poster.post(record=False)
    for _ in range(count):
        for poster in posters:
            poster.post()
    print(f"{'one POST':<16}{'n':>5}{'median ms':>11}{'p90 ms':>9}{'p99 ms':>9}")
    for poster in posters:
        s = poster.samples_ms
        p90, p99 = percentile(s, 0.9), percentile(s, 0.99)
        print(f"{poster.name:<16}{len(s):>5}{statistics.median(s):>11.3f}{p90:>9.3f}{p99:>9.3f}")
    direct, via = (statistics.median(p.samples_ms) for p in posters)
    print(f"median POST: via-glia / direct = {via / direct:.2f}; glia adds {via - direct:+.3f} ms")


@contextmanager
def servers(workdir: Path) -> Iterator[tuple[dict[str, Synapse], dict[str, str]]]:
    """The three Synapses, and the do-nothing server and glia behind two of them; and the
    `base_url` each module is given."""
    with ExitStack() as stack:
        nothing = AntispamFake.start(workdir, "nothing", "nothing")
        stack.callback(nothing.stop)
        port = free_port()
        glia_dir = workdir / "glia"
        glia_dir.mkdir()
        relay = {
            "module": "http_antispam",
            "name": "relay",
            "config": {"base_url": nothing.base_url, "enabled_callbacks": CALLBACKS},
        }
        config = {"listen": f"127.0.0.1:{port}", "auth_token": GLIA_TOKEN, "modules": [relay]}
        glia = Glia.start(glia_binary(), glia_dir, config, port)
        stack.callback(glia.stop)
        setups = {
            "none": [],
            "direct": [antispam_module(nothing.base_url, enabled_callbacks=CALLBACKS)],
            "via-glia": [
                antispam_module(glia.url + INGRESS_PATH, authorization=GLIA_TOKEN, enabled_callbacks=CALLBACKS)
            ],
        }
        running = {}
        for name, modules in setups.items():
            synapse = Synapse.start(workdir / f"synapse-{name}", modules, bridge_log_level="INFO")
            stack.callback(synapse.stop)
            running[name] = synapse
        yield running, {"direct": nothing.base_url, "via-glia": glia.url + INGRESS_PATH}


def ratios(senders: list[Sender]) -> None:
    """`via-glia` against `direct`: medians, and the time each adds over `none`."""
    median = {s.name: statistics.median(s.samples_ms) for s in senders}
    added_direct = median["direct"] - median["none"]
    added_glia = median["via-glia"] - median["none"]
    print(
        f"median send: via-glia / direct = {median['via-glia'] / median['direct']:.2f}; "
        f"added over none: direct {added_direct:+.2f} ms, via-glia {added_glia:+.2f} ms"
        + (f" ({added_glia / added_direct:.2f}x)" if added_direct > 0 else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=200, help="measured sends per setup (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured sends per setup first (default 20)")
    parser.add_argument("--posts", type=int, default=2000, help="measured POSTs per path for the hop (default 2000)")
    args = parser.parse_args()
    print(f"glia binary: {glia_binary()}; do-nothing server: {fake_binary()}")
    with tempfile.TemporaryDirectory(prefix="glia-bench-antispam-") as tmp, servers(Path(tmp)) as (running, urls):
        senders = interleaved_sends(running, args.sends, args.warmup)
        report(senders)
        ratios(senders)
        if args.posts:
            hop(urls, args.posts)


if __name__ == "__main__":
    main()
