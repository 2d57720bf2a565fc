"""One event loop for Twisted and asyncio.

Synapse modules are Twisted code (Deferreds, `defer.ensureDeferred`, `deferToThread`); the host's
transports (the pipe to glia, nats-py) are asyncio code. Twisted's asyncio reactor runs Twisted
on an asyncio loop, so both share one thread and one loop. It must be installed before anything
imports `twisted.internet.reactor`, which is why `install` is the first thing the command runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def install() -> asyncio.AbstractEventLoop:
    """Installs Twisted's asyncio reactor on a fresh asyncio loop and returns the loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    return loop


def run(main: Coroutine[Any, Any, int]) -> int:
    """Runs `main` with the reactor running (its thread pool, `callWhenRunning`), then stops
    the reactor; returns `main`'s exit status. Signals are the caller's to handle."""
    from twisted.internet import reactor

    status = [1]

    async def body() -> None:
        try:
            status[0] = await main
        finally:
            reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(lambda: asyncio.ensure_future(body()))  # type: ignore[attr-defined]
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]
    return status[0]


async def settle(value: Any) -> Any:
    """The result of what a module's function returned: awaited when it is a coroutine or a
    Deferred (driven by Twisted, so the module may await Deferreds), else the value itself."""
    from twisted.internet import defer

    if isinstance(value, defer.Deferred):
        return await value.asFuture(asyncio.get_running_loop())
    if isinstance(value, Coroutine):
        return await defer.ensureDeferred(value).asFuture(asyncio.get_running_loop())
    if isinstance(value, Awaitable):
        return await value
    return value
