"""The host on its own, serving its modules over NATS (docs/PROTOCOL.md), as `glia worker` does:
N hosts share a module's load in its queue group.

For each module it subscribes to `glia.v1.module.<name>.>` in queue group
`glia.v1.module.<name>` and to its own subjects `glia.v1.worker.<id>.<name>.*`, confirms the
subscriptions with a request to its own `describe` subject, and announces itself on
`glia.v1.workers.<name>` every 100 ms, so coordinators route around a host that stalls. It
drops invocations whose `Glia-Deadline` has passed, answers `unavailable` at once past the
module's `max_in_flight` running plus its `restart.stash` waiting, and on SIGTERM or SIGINT
announces that it is leaving, drains (answers what it received) and exits. Each callback runs
in a span continuing the invocation's `traceparent` header, exported as the standard OTEL_*
variables say (`tracing.py`).

A module's web resources (`register_web_resource`) are served as a child host serves them
(`web.py`): glia sends a request for one of them on `glia.v1.module.<name>.web`, and the
host answers with the module's response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from typing import Any

from glia_python_host.glia_config import HostConfig, ModuleEntry
from glia_python_host.hosted import HostedModule, failed, reply
from glia_python_host.tracing import Tracing
from glia_python_host.web import WebServer, web_error

logger = logging.getLogger(__name__)

PREFIX = "glia.v1.module"
WORKER_PREFIX = "glia.v1.worker"
ANNOUNCE_PREFIX = "glia.v1.workers"
ANNOUNCE_INTERVAL_MS = 100


class ModuleServer:
    """Serves one module on one NATS connection."""

    def __init__(
        self, nc: Any, entry: ModuleEntry, module: HostedModule, worker_id: str, tracing: Tracing | None = None
    ) -> None:
        self.nc = nc
        self.entry = entry
        self.module = module
        self.tracing = tracing or Tracing()
        self.worker_id = worker_id
        self.queue = f"{PREFIX}.{entry.name}"
        self.own = f"{WORKER_PREFIX}.{worker_id}.{entry.name}"
        self.capacity = entry.max_in_flight + entry.stash
        self.running = asyncio.Semaphore(entry.max_in_flight)
        self.admitted = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.subscriptions: list[Any] = []
        self.web = WebServer(None, None)

    async def start(self) -> None:
        """Serves the module's web resources, subscribes to the queue group and the host's own
        subjects, and returns once nats-server has both."""
        self.web = await WebServer.start(self.module.registry.web_resources)
        self.subscriptions.append(await self.nc.subscribe(f"{self.queue}.>", queue=self.queue, cb=self.on_message))
        self.subscriptions.append(await self.nc.subscribe(f"{self.own}.*", cb=self.on_message))
        # A request goes out after the SUBs, so its answer proves the server has them.
        await self.nc.request(f"{self.own}.describe", b"", timeout=5)

    async def announce(self, leaving: bool = False) -> None:
        """Publishes one `Announcement`."""
        body: dict[str, Any] = {"worker": self.worker_id, "interval_ms": ANNOUNCE_INTERVAL_MS}
        if leaving:
            body["leaving"] = True
        await self.nc.publish(f"{ANNOUNCE_PREFIX}.{self.entry.name}", json.dumps(body).encode())

    async def on_message(self, msg: Any) -> None:
        """`describe`; a web request, served by a task; or an invocation: admitted (or
        refused at once) and served by a task."""
        if not msg.reply:
            return
        callback = msg.subject.rsplit(".", 1)[-1]
        if callback == "describe":
            await self.respond(msg, self.module.describe())
            return
        headers = msg.headers or {}
        request_id = headers.get("Glia-Request-Id", "")
        deadline = headers.get("Glia-Deadline")
        if deadline is not None and deadline.isdigit() and int(deadline) <= time.time() * 1000:
            logger.info("dropping %s (%s): its deadline has passed", callback, request_id)
            return
        if callback == "web":
            # Not admitted against the invocations' capacity, as glia's own workers do.
            self.track(asyncio.ensure_future(self.serve_web(msg)))
            return
        if self.admitted >= self.capacity:
            await self.respond(
                msg, reply(request_id, "error", {"kind": "unavailable", "reason": "the host is at capacity"})
            )
            return
        self.admitted += 1
        self.track(asyncio.ensure_future(self.serve(msg, callback, request_id)))

    def track(self, task: asyncio.Task[None]) -> None:
        """Keeps `task` until it is done, so a drain waits for it."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve_web(self, msg: Any) -> None:
        """Answers one `WebCallRequest` with the module's `WebCallResponse`."""
        try:
            request = json.loads(msg.data)
        except ValueError as e:
            request = None
            logger.warning("a web request that is not JSON: %s", e)
        if not isinstance(request, dict):
            await self.respond(msg, web_error(400, "M_BAD_JSON", "malformed web request: not a JSON object"))
            return
        await self.respond(msg, await self.web.serve(request))

    async def serve(self, msg: Any, callback: str, request_id: str) -> None:
        try:
            async with self.running:
                try:
                    invocation = json.loads(msg.data)
                except ValueError as e:
                    await self.respond(msg, failed(request_id, f"malformed invocation: body is not JSON: {e}"))
                    return
                headers = msg.headers or {}
                answer = await self.tracing.invoke(
                    self.entry.name,
                    invocation,
                    headers.get("traceparent"),
                    headers.get("tracestate"),
                    lambda: self.module.invoke(invocation, callback),
                )
                await self.respond(msg, answer)
        finally:
            self.admitted -= 1

    async def respond(self, msg: Any, body: Any) -> None:
        """Publishes `body` to the request's reply subject (no headers)."""
        await self.nc.publish(msg.reply, json.dumps(body, separators=(",", ":")).encode())

    async def drain(self) -> None:
        """Announces leaving, unsubscribes (taking what the server already routed), and waits
        for every invocation received to be answered."""
        await self.announce(leaving=True)
        for subscription in self.subscriptions:
            await subscription.drain()
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        await self.web.stop()


async def serve(config: HostConfig) -> int:
    """Serves `config`'s modules until SIGTERM or SIGINT; then drains and returns 0."""
    import nats

    stop = asyncio.Event()
    worker_id = f"py{os.getpid()}{os.urandom(4).hex()}"
    modules = [
        (entry, HostedModule(entry.module, entry.config, config.homeserver, entry.name)) for entry in config.modules
    ]
    nc = await nats.connect(
        servers=config.nats.servers,
        name=f"glia python host (pid {os.getpid()})",
        max_reconnect_attempts=-1,
        **config.nats.options,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tracing = Tracing.from_env()
    servers = [ModuleServer(nc, entry, module, worker_id, tracing) for entry, module in modules]
    for server in servers:
        await server.start()
        logger.info(
            "serving %s (%s) on %s.> as worker %s", server.entry.name, server.entry.module, server.queue, worker_id
        )

    async def announce_forever() -> None:
        while not stop.is_set():
            for server in servers:
                await server.announce()
            await asyncio.sleep(ANNOUNCE_INTERVAL_MS / 1000)

    announcer = asyncio.ensure_future(announce_forever())
    await stop.wait()
    logger.info("draining")
    announcer.cancel()
    for server in servers:
        await server.drain()
    await nc.drain()
    tracing.close()
    logger.info("drained; bye")
    return 0
