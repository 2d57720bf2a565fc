#!/usr/bin/env python3
"""The scripted module served to glia over NATS (glia bus protocol v1, docs/PROTOCOL.md):
the same script and the same call records as the native module (`scripted_synapse.py`), so
a test can put one behaviour in both places and compare what a Matrix client sees.

One process serves several module names, each on `glia.v1.module.<name>.>` in queue group
`glia.v1.module.<name>`, and answers `describe` with the callbacks it was given::

    python scripted_remote.py --nats-url nats://127.0.0.1:4222 --script script.json \\
        --calls calls.jsonl --module s1=check_event_for_spam,user_may_invite --module s2=...

A script's values become glia-bus-v1 answers (`scripted_common.wire_answer`), a
`SynapseError` a `failed` error carrying `synapse_error` (or `on_create_room`'s `deny`
answer), a plain exception a `failed` error; `check_media_file_for_spam` decodes the file's
base64 `content`. Invocations run concurrently (a scripted sleep delays only its own).
SIGTERM or SIGINT drains and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "deploy" / "examples" / "python-module"))

from glia_remote_example import (
    SUBJECT_PREFIX,
    MalformedInvocation,
    answer,
    deadline_passed,
    decode,
    failed,
    string_field,
)
from scripted_common import (
    CALLBACKS,
    ScriptError,
    action_for,
    read_script,
    record_call,
    resolve,
    view_args,
    wire_answer,
    wire_synapse_error,
)

log = logging.getLogger("scripted_remote")


def file_view(file: Any) -> Any:
    """`check_media_file_for_spam`'s `file` as the native module sees it: the bytes (as
    Latin-1 text) and the whole file's length."""
    if not isinstance(file, Mapping) or not isinstance(file.get("content"), str):
        return file
    content = base64.b64decode(file["content"])
    view = {"content": content.decode("latin-1"), "length": file.get("length", len(content))}
    if file.get("truncated"):
        view["truncated"] = True
    return view


class ScriptedServer:
    """Serves the scripted modules on one NATS connection."""

    def __init__(
        self,
        nc: Client,
        modules: Mapping[str, list[str]],
        script: str,
        calls: str | None,
        login_types: Mapping[str, Mapping[str, list[str]]],
    ) -> None:
        self.nc = nc
        self.modules = modules
        self.script = script
        self.calls = calls
        self.login_types = login_types
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Subscribes every module, and returns once nats-server has the subscriptions."""
        for name in self.modules:
            queue = f"{SUBJECT_PREFIX}.{name}"
            await self.nc.subscribe(f"{queue}.>", queue=queue, cb=self.on_message)
        for name in self.modules:  # a request after the SUBs proves the server has them
            await self.nc.request(f"{SUBJECT_PREFIX}.{name}.describe", b"", timeout=5)

    def describe(self, name: str) -> dict[str, Any]:
        """The module's `Description`."""
        checkers = [{"login_type": t, "fields": f} for t, f in self.login_types.get(name, {}).items()]
        return {"callbacks": list(self.modules[name]), "auth_checkers": checkers, "web_resources": []}

    async def on_message(self, msg: Msg) -> None:
        """Hands each invocation to its own task, so a scripted sleep delays only itself."""
        task = asyncio.create_task(self.handle(msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def handle(self, msg: Msg) -> None:
        if not msg.reply:
            return
        _, _, rest = msg.subject.partition(SUBJECT_PREFIX + ".")
        name, _, callback = rest.partition(".")
        if callback == "describe":
            await self.reply(msg, self.describe(name))
            return
        request_id = (msg.headers or {}).get("Glia-Request-Id", "")
        served = callback in self.modules[name] or (callback == "check_auth" and name in self.login_types)
        try:
            if deadline_passed(msg):
                log.info("dropping %s.%s (request %s): its deadline has passed", name, callback, request_id)
                return
            invocation = decode(msg)
            request_id = string_field(invocation, "request_id")
            args = invocation.get("args") if invocation.get("callback") == callback else None
            if not served or not isinstance(args, dict):
                raise MalformedInvocation(f"not an invocation of {callback!r} with arguments that {name} serves")
            reply = await self.invoke(name, callback, request_id, args)
        except (MalformedInvocation, ScriptError) as e:
            log.warning("%s.%s (request %s): %s", name, callback, request_id, e)
            reply = failed(request_id, f"malformed invocation: {e}")
        await self.reply(msg, reply)

    async def invoke(self, name: str, callback: str, request_id: str, args: dict[str, Any]) -> dict[str, Any]:
        """Records the call and answers what the script says now."""
        spec = CALLBACKS[callback]
        json_args = {k: (file_view(v) if k == "file" else v) for k, v in args.items()}
        view = view_args(callback, json_args)
        if self.calls is not None:
            record_call(self.calls, name, callback, view)
        step = resolve(action_for(read_script(self.script), name, callback), spec, view)
        if step.sleep:
            await asyncio.sleep(step.sleep)
        error = step.error
        if error is None:
            return answer(request_id, callback, wire_answer(step.value, spec, args))
        if error.status is None:
            return failed(request_id, f"RuntimeError: {error.message}")
        if error.as_deny:
            return answer(request_id, callback, {"deny": wire_synapse_error(error)})
        reply = failed(request_id, f"SynapseError: {error.message}")
        reply["result"]["error"]["synapse_error"] = wire_synapse_error(error)
        return reply

    async def reply(self, msg: Msg, body: dict[str, Any]) -> None:
        """Publishes `body` to the request's reply subject (no headers)."""
        await self.nc.publish(msg.reply, json.dumps(body).encode())


async def serve(args: argparse.Namespace) -> None:
    """Serves until SIGTERM or SIGINT, then drains."""
    stop = asyncio.Event()
    nc = await nats.connect(args.nats_url, name="glia-scripted-modules", max_reconnect_attempts=-1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    modules = dict(args.module)
    login_types: dict[str, dict[str, list[str]]] = {}
    for name, login_type, fields in args.login_type:
        login_types.setdefault(name, {})[login_type] = fields
    server = ScriptedServer(nc, modules, args.script, args.calls, login_types)
    await server.start()
    log.info("serving scripted modules %s", ", ".join(modules))
    await stop.wait()
    await nc.drain()
    log.info("drained; bye")


def module_arg(value: str) -> tuple[str, list[str]]:
    """argparse type: `NAME=callback,callback,...`."""
    name, _, callbacks = value.partition("=")
    unknown = [c for c in callbacks.split(",") if c and c not in CALLBACKS]
    if not name or unknown:
        raise argparse.ArgumentTypeError(f"expected NAME=callback,...; unknown callbacks {unknown}")
    return name, [c for c in callbacks.split(",") if c]


def login_type_arg(value: str) -> tuple[str, str, list[str]]:
    """argparse type: `NAME:LOGIN_TYPE=field,field` (an auth checker of module NAME)."""
    name, _, rest = value.partition(":")
    login_type, _, fields = rest.partition("=")
    if not name or not login_type:
        raise argparse.ArgumentTypeError("expected NAME:LOGIN_TYPE=field,...")
    return name, login_type, [f for f in fields.split(",") if f]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--script", required=True, help="the script file (read at every call)")
    parser.add_argument("--calls", help="the calls file (one JSON line appended per call; none: not recorded)")
    parser.add_argument("--module", type=module_arg, action="append", required=True, metavar="NAME=CALLBACKS")
    parser.add_argument("--login-type", type=login_type_arg, action="append", default=[], metavar="NAME:TYPE=FIELDS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
