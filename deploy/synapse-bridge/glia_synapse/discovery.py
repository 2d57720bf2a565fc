"""What glia's modules use (`GET /_glia/v1/modules`), and asking again when it may have changed.

The bridge asks at start-up (a short blocking request, before Synapse serves). What it learns
decides what it registers with Synapse, which only start-up can do, and what it does with what
it registered: a callback it registered that no glia module serves is answered at once, as
Synapse answers with no module for it, and a web path glia does not list is Synapse's 404.

glia's listing can change after that, and a process may not have it at all: Synapse (a worker
restarted in a rolling restart) may start while glia is down. So the listing is asked again
(`Rediscovery`):

- when start-up could not ask, until glia answers (every `discovery_retry_interval` seconds);
- when a callback response names a generation of glia's routing (`Glia-Generation`) not seen
  at a discovery yet: glia reloaded its config, or this is another coordinator. A listing
  asked after a response named a generation is at least as new as that generation, so each
  generation costs one request per Synapse process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet import reactor as default_reactor

from glia_synapse.errors import GliaFailure
from glia_synapse.logcontext import yieldable

logger = logging.getLogger(__name__)

#: Generations remembered as discovered; past it the oldest are forgotten (a coordinator
#: behind a load balancer has its own generation, each one seen again costs a discovery).
MAX_KNOWN_GENERATIONS = 64


@dataclass(frozen=True)
class Discovery:
    """What glia's modules use, from `GET /_glia/v1/modules`."""

    #: Callbacks at least one module registered.
    callbacks: frozenset[str] = frozenset()
    #: Web resource paths, in glia's config order.
    web_paths: tuple[str, ...] = ()
    #: Those of `web_paths` that also serve every path below them.
    web_subtrees: frozenset[str] = frozenset()
    #: Login type to its fields (None when glia does not say).
    login_types: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> Discovery:
        """Reads glia's module listing."""
        modules = [m for m in reply.get("modules") or () if isinstance(m, Mapping)]
        callbacks = set(reply.get("plans") or {})
        paths: list[str] = []
        subtrees: set[str] = set()
        login_types: dict[str, tuple[str, ...] | None] = {}
        for module in modules:
            callbacks.update(module.get("callbacks") or ())
            paths.extend(p for p in module.get("web_resources") or () if p not in paths)
            subtrees.update(module.get("web_resource_subtrees") or ())
            for login_type in module.get("login_types") or ():
                login_types.setdefault(login_type, None)
            for checker in module.get("auth_checkers") or ():  # {login_type, fields}, if glia lists them
                if isinstance(checker, Mapping) and isinstance(checker.get("login_type"), str):
                    login_types[checker["login_type"]] = tuple(checker.get("fields") or ())
        return cls(frozenset(callbacks), tuple(paths), frozenset(subtrees), login_types)


class Rediscovery:
    """Asks glia for its listing until it answers, whenever it may have changed (see the
    module doc), one request at a time, and hands each answer to `apply`.

    `fetch(timeout)` is the client's `get_modules`; `current_generation()` the generation the
    last callback response named (`Generations.current`).
    """

    def __init__(
        self,
        api: Any,
        fetch: Callable[[float], Any],
        apply: Callable[[Discovery], None],
        current_generation: Callable[[], str | None],
        timeout: float,
        interval: float,
        reactor: Any = None,
    ) -> None:
        self._api = api
        self._fetch = fetch
        self._apply = apply
        self._current_generation = current_generation
        self._timeout = timeout
        self._interval = interval
        self._reactor = reactor or default_reactor
        #: Generations named by a response before a listing was asked (ordered, bounded).
        self._known: dict[str, None] = {}
        self._running = False
        #: The reactor call that ends the pending wait between attempts.
        self._waiting: Any = None

    def discovered(self, generation: str | None) -> None:
        """Records that a listing was asked after a response named `generation`."""
        if generation is None:
            return
        self._known.pop(generation, None)
        self._known[generation] = None
        while len(self._known) > MAX_KNOWN_GENERATIONS:
            del self._known[next(iter(self._known))]

    def heard(self, generation: str) -> None:
        """A callback response named `generation`: asks for the listing unless one was asked
        since; a discovery waiting to retry asks at once (glia answers again)."""
        if generation in self._known:
            return
        if self._running:
            self._wake()
        else:
            self.start(0.0)

    def start(self, delay: float) -> None:
        """Starts discovering, after `delay` seconds, unless a discovery is under way."""
        if self._running:
            return
        self._running = True
        self._api.run_as_background_process("glia_bridge_discovery", self._run, delay)

    async def _run(self, delay: float) -> None:
        try:
            if delay > 0:
                await self._sleep(delay)
            while True:
                generation = self._current_generation()
                try:
                    reply = await self._fetch(self._timeout)
                except GliaFailure as e:
                    logger.info("glia's module list is out of reach (%s); asking again in %g s", e, self._interval)
                    await self._sleep(self._interval)
                    continue
                self.discovered(generation)
                try:
                    self._apply(Discovery.from_reply(reply))
                except Exception:
                    logger.exception("applying glia's module list failed")
                latest = self._current_generation()
                if latest is None or latest in self._known:
                    return
                # a response named another generation meanwhile: its listing may differ
        finally:
            self._running = False

    async def _sleep(self, seconds: float) -> None:
        """Waits `seconds`, or until `_wake`."""
        waiting: defer.Deferred[None] = defer.Deferred()
        self._waiting = self._reactor.callLater(seconds, waiting.callback, None)
        try:
            await yieldable(waiting)
        finally:
            self._waiting = None

    def _wake(self) -> None:
        """Ends the wait now: from the reactor, not from the caller (a request, whose log
        context must not run the discovery)."""
        if self._waiting is not None and self._waiting.active():
            self._waiting.reset(0)
