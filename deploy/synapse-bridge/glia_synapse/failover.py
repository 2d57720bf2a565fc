"""Several glia coordinators: use one, move to another when it is unreachable.

Coordinators are tried in config order, skipping those that failed recently (each failure
doubles a backoff, from `FIRST_BACKOFF` up to `MAX_BACKOFF`; a success clears it), then, if
every one is backing off, the one whose backoff ends first. Only an attempt started after the
last failure was noted counts as a further failure: the attempts that were already in flight
when a coordinator went away fail with it, and under load there are many, which would
otherwise take the backoff to its maximum at once (the fault matrix saw a coordinator left
unused for 29 s after a 3 s partition). A request moves on to the next
coordinator when:

- it certainly did not reach the coordinator (the connection was refused, or the
  coordinator was shutting down and answered 503 before dispatching): always;
- it may have reached it (the connection broke after the request was written, or no answer
  came within the per-attempt timeout): only when the request is safe to send again — a
  decision, whose effect is its answer — never a notification, which the first coordinator
  may already have delivered to its modules.

With a single coordinator URL (a Kubernetes Service, a load balancer), a decision gets a second
attempt on a fresh connection. Every attempt ends by the caller's deadline (the callback's
timeout): at the deadline the exchange fails with `TimeoutError`, and the coordinator is not
counted as failed for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from glia_synapse.deadline import with_timeout
from glia_synapse.errors import GliaFailure
from glia_synapse.logcontext import yieldable
from glia_synapse.transport import BadResponse, MaybeDelivered, NotDelivered, Pool, Response

#: The first backoff after a coordinator fails, in seconds; each further failure doubles it.
FIRST_BACKOFF = 0.5
#: The longest backoff, in seconds: a coordinator that came back is used again within this.
MAX_BACKOFF = 30.0
#: What a coordinator that is shutting down answers requests on new connections (before
#: dispatching them to any module).
SHUTTING_DOWN = 503


@dataclass
class _Health:
    failures: int = 0
    down_until: float = 0.0
    #: When the last failure was noted.
    failed_at: float = float("-inf")


class Coordinators:
    """The configured coordinators, their health, and the failover between them."""

    def __init__(
        self,
        pools: Sequence[Pool],
        reactor: Any,
        attempt_timeout: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pools = list(pools)
        self._health = [_Health() for _ in self._pools]
        self._reactor = reactor
        self._attempt_timeout = attempt_timeout
        self._clock = clock

    def order(self) -> list[int]:
        """The coordinators to try, by index: healthy ones in config order, then those
        backing off, soonest back first."""
        now = self._clock()
        healthy = [i for i, h in enumerate(self._health) if h.down_until <= now]
        backing_off = sorted(
            (i for i, h in enumerate(self._health) if h.down_until > now), key=lambda i: self._health[i].down_until
        )
        return healthy + backing_off

    def failed(self, index: int, started: float = float("inf")) -> None:
        """Records a failure of coordinator `index`, of an attempt started at `started`: it
        backs off, and its idle connections, likely as dead as the one that failed, are
        closed. An attempt started before the last failure was noted adds nothing to it."""
        self._pools[index].close()
        health = self._health[index]
        now = self._clock()
        if started < health.failed_at:
            return
        health.failures += 1
        health.failed_at = now
        backoff = min(FIRST_BACKOFF * 2 ** (health.failures - 1), MAX_BACKOFF)
        health.down_until = now + backoff

    def succeeded(self, index: int) -> None:
        """Records an answer from coordinator `index`."""
        health = self._health[index]
        if health.failures:
            health.failures, health.down_until, health.failed_at = 0, 0.0, float("-inf")

    async def request(
        self,
        method: bytes,
        path: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        deadline: float,
        retry_safe: bool,
        refused_status: int | None = SHUTTING_DOWN,
    ) -> Response:
        """Sends one request to the first coordinator that answers, as the module doc says.

        `deadline` is the `clock()` time by which the caller gives up: an attempt still
        unanswered then is cancelled and `TimeoutError` raised. `refused_status` is a status
        meaning "not dispatched, ask another". Raises `GliaFailure` when no coordinator
        answered.
        """
        errors: list[str] = []
        order = self.order()
        if len(order) == 1 and retry_safe:
            # One URL (a Kubernetes Service, a load balancer): a decision gets a second,
            # fresh connection, which may reach another instance behind it.
            order *= 2
        for index in order:
            pool = self._pools[index]
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            at_deadline = self._attempt_timeout is None or remaining <= self._attempt_timeout
            started = self._clock()
            attempt = pool.request(method, path, headers, body)
            if not attempt.called:
                attempt = with_timeout(attempt, remaining if at_deadline else self._attempt_timeout, self._reactor)
            try:
                response = await yieldable(attempt)
            except NotDelivered as e:
                self.failed(index, started)
                errors.append(f"{pool.address.url}: not reachable ({e})")
                continue
            except (MaybeDelivered, defer.TimeoutError) as e:
                timed_out = isinstance(e, defer.TimeoutError)
                if timed_out and at_deadline:
                    raise  # the caller's time is up, which says nothing about the coordinator
                self.failed(index, started)
                errors.append(f"{pool.address.url}: {'no answer in time' if timed_out else e}")
                if retry_safe:
                    continue
                raise GliaFailure(_summary(errors, "not resent: it may have been delivered"), kind="unreachable") from e
            except BadResponse as e:
                raise GliaFailure(
                    f"{pool.address.url} answered something that is not HTTP: {e}", kind="bad_reply"
                ) from e
            if refused_status is not None and response.status == refused_status:
                self.failed(index, started)
                errors.append(f"{pool.address.url}: answered {response.status} (shutting down)")
                continue
            self.succeeded(index)
            return response
        raise GliaFailure(_summary(errors, "no coordinator answered"), kind="unreachable")


def _summary(errors: list[str], outcome: str) -> str:
    return f"glia is unreachable ({outcome}): {'; '.join(errors) or 'out of time before any attempt'}"
