"""Synapse's log-context rule for the Deferreds the bridge awaits, at the cost of two context
switches.

Code running for a Synapse request must not leave that request's log context active when it
hands control back to the reactor, and must have it back when it resumes. Synapse's public
`make_deferred_yieldable` does this and, for its own tracing, also draws a random id and makes
several debug-log calls each time; on the bridge's path, every forwarded callback, that was a
measurable share of the cost. `yieldable` keeps the rule without the tracing, through
Synapse's log-context functions, and falls back to the public helper where those cannot be
imported.
"""

from __future__ import annotations

from typing import Any, TypeVar

from synapse.module_api import make_deferred_yieldable
from twisted.internet import defer

T = TypeVar("T")

try:
    from synapse.logging.context import SENTINEL_CONTEXT, set_current_context
except ImportError:  # pragma: no cover - a Synapse whose internals moved
    SENTINEL_CONTEXT = None
    set_current_context = None


def yieldable(deferred: defer.Deferred[T]) -> defer.Deferred[T]:
    """`deferred`, safe to await under Synapse's log-context rule: if it has not fired, the
    log context is cleared while it waits and the caller's is restored when it fires."""
    if set_current_context is None:  # pragma: no cover - see the module's doc
        return make_deferred_yieldable(deferred)
    if deferred.called and not deferred.paused:
        return deferred
    calling = set_current_context(SENTINEL_CONTEXT)
    deferred.addBoth(_restore, calling)
    return deferred


def _restore(result: Any, context: Any) -> Any:
    set_current_context(context)
    return result
