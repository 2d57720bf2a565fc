"""The host as a child of `glia serve` (or `glia worker`): one module, over a pipe.

glia starts `python -m glia_python_host child` and speaks the bus schema's host frames
(`bus-schema/src/host.rs`), one JSON object per line: it writes `start` (the module, its
config, the homeserver settings) and then `invoke` and `web` frames to the host's standard
input; the host answers `ready` (the module's description) or `failed` (it could not be
loaded), then a `reply` per `invoke` and a `web_reply` per `web`, on the file descriptor that
was its standard output. The module's own output (a `print`, a C library writing to fd 1) goes
to standard error, with the host's log, so it cannot corrupt the frames.

The end of standard input means glia has gone or stopped the module: the host exits. A host
whose loop is blocked by its module does not see that end; it dies with glia all the same
(`parent.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, BinaryIO

from glia_python_host.hosted import HostedModule, failed
from glia_python_host.loader import LoadError
from glia_python_host.settings import HomeserverSettings, SettingsError
from glia_python_host.tracing import Tracing
from glia_python_host.web import WebServer

logger = logging.getLogger(__name__)

#: The longest frame glia may send (a media file's bytes travel in one).
MAX_FRAME = 64 * 1024 * 1024


class FrameWriter:
    """Writes frames to glia, one JSON line each. Writes block: glia reads the pipe all the
    time, and a frame written whole in one call cannot interleave with another."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    async def send(self, frame: Mapping[str, Any]) -> None:
        """Writes one frame."""
        self._out.write(json.dumps(frame, separators=(",", ":")).encode() + b"\n")


async def open_pipes() -> tuple[asyncio.StreamReader, FrameWriter]:
    """glia's frames in (standard input) and out (the original standard output, which then
    points at standard error for everything else)."""
    loop = asyncio.get_running_loop()
    frames_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reader = asyncio.StreamReader(limit=MAX_FRAME)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader, FrameWriter(frames_out)


def deadline_passed(invocation: Any) -> bool:
    """Whether nobody waits for the invocation any more (`deadline_ms` has passed)."""
    deadline = invocation.get("deadline_ms") if isinstance(invocation, Mapping) else None
    return isinstance(deadline, int) and deadline <= time.time() * 1000


async def serve_frames(
    reader: asyncio.StreamReader, out: FrameWriter, module: HostedModule, web: WebServer, tracing: Tracing
) -> None:
    """Answers `invoke` and `web` frames until standard input ends; each frame is served by
    a task of its own, so a slow callback delays only itself. A callback runs in a span that
    continues the frame's trace context (`tracing`)."""
    tasks: set[asyncio.Task[None]] = set()

    async def invoke(frame: Mapping[str, Any]) -> None:
        invocation = frame.get("invocation")
        if deadline_passed(invocation):
            answer = failed(invocation.get("request_id", ""), "the invocation's deadline passed before it started")
        else:
            answer = await tracing.invoke(
                module.instance_name,
                invocation,
                frame.get("traceparent"),
                frame.get("tracestate"),
                lambda: module.invoke(invocation),
            )
        await out.send({"reply": {"id": frame.get("id"), "reply": answer}})

    async def serve_web(frame: Mapping[str, Any]) -> None:
        await out.send({"web_reply": {"id": frame.get("id"), **await web.serve(frame)}})

    while True:
        line = await reader.readline()
        if not line:
            return
        try:
            frame = json.loads(line)
        except ValueError:
            logger.error("glia sent a line that is not JSON: %.200r", line)
            continue
        if isinstance(frame, dict) and isinstance(frame.get("invoke"), dict):
            task = asyncio.ensure_future(invoke(frame["invoke"]))
        elif isinstance(frame, dict) and isinstance(frame.get("web"), dict):
            task = asyncio.ensure_future(serve_web(frame["web"]))
        else:
            logger.error("glia sent an unknown frame: %.200r", line)
            continue
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def run() -> int:
    """Reads `start`, loads the module, says `ready` (or `failed`), then serves frames."""
    reader, out = await open_pipes()
    line = await reader.readline()
    try:
        start = json.loads(line or b"null").get("start")
        settings = HomeserverSettings.from_json(start.get("homeserver") or {})
        module = HostedModule(start["module"], start.get("config"), settings, start.get("name"))
    except LoadError as e:
        await out.send({"failed": e.to_json()})
        return 1
    except (AttributeError, KeyError, TypeError, ValueError, SettingsError) as e:
        await out.send({"failed": {"path": [], "message": f"glia's start frame is unreadable: {e}"}})
        return 1
    web = await WebServer.start(module.registry.web_resources)
    await out.send({"ready": {"description": module.describe(), "subtrees": module.registry.subtrees()}})
    logger.info("serving %s: %s", start["module"], module.describe())
    tracing = Tracing.from_env(start.get("name"))
    await serve_frames(reader, out, module, web, tracing)
    await web.stop()
    tracing.close()
    return 0
