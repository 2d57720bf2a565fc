"""A Synapse module for benchmarks: times Synapse's own `check_event_for_spam` dispatch (every
registered spam checker's callback, as Synapse runs them for a message) from inside Synapse.

`GET /_synapse/client/bench/check_event_for_spam?n=N` runs the dispatch N times, one after
another, on a fixed message event, and answers the milliseconds of each as a JSON list. The
clock runs in Synapse's reactor thread around Synapse's call, so it sees what a module costs
Synapse (the bridge's transport included) and none of the client's HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from synapse.events import make_event_from_dict
from synapse.module_api import ModuleApi, run_in_background
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

PATH = "/_synapse/client/bench/check_event_for_spam"


class CallbackTimer:
    """Registers the timing resource at `PATH`."""

    def __init__(self, config: Mapping[str, Any], api: ModuleApi) -> None:
        api.register_web_resource(PATH, _Timer(api))

    @staticmethod
    def parse_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
        return config


class _Timer(Resource):
    isLeaf = True

    def __init__(self, api: ModuleApi) -> None:
        super().__init__()
        self._api = api
        self._event = make_event_from_dict(
            {
                "type": "m.room.message",
                "room_id": "!bench:localhost",
                "sender": "@bench:localhost",
                "event_id": "$bench-event",
                "origin_server_ts": 1764000000000,
                "content": {"msgtype": "m.text", "body": "benchmark message"},
                "auth_events": [],
                "prev_events": [],
                "depth": 1,
                "hashes": {"sha256": "x"},
                "signatures": {},
            }
        )

    def render_GET(self, request: Any) -> Any:
        count = int(request.args.get(b"n", [b"100"])[0])
        run_in_background(self._time, request, count)
        return NOT_DONE_YET

    async def _time(self, request: Any, count: int) -> None:
        spam_checker = self._api._hs.get_module_api_callbacks().spam_checker  # type: ignore[attr-defined]
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            await spam_checker.check_event_for_spam(self._event)
            samples.append((time.perf_counter() - started) * 1000)
        body = json.dumps(samples).encode()
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", str(len(body)).encode())
        request.write(body)
        request.finish()
