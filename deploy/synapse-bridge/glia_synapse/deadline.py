"""A timeout for a Deferred that cancels it before the caller resumes."""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

T = TypeVar("T")


def with_timeout(inner: defer.Deferred[T], timeout: float, reactor: Any) -> defer.Deferred[T]:
    """A Deferred with `inner`'s result, or failing with `TimeoutError` after `timeout`
    seconds, when `inner` is cancelled (and its late result, if any, dropped).

    `inner` is cancelled *before* the caller resumes, so its clean-up runs while the
    caller's Synapse request (and log context) is still alive. Unlike
    `Deferred.addTimeout`, the timeout fires even if cancelling `inner` does not make it
    fire at once.
    """
    outer: defer.Deferred[T] = defer.Deferred()
    expired = False

    def timed_out() -> Failure:
        return Failure(defer.TimeoutError(f"no answer within {timeout:g} s"))

    def expire() -> None:
        nonlocal expired
        expired = True
        inner.cancel()
        if not outer.called:
            outer.errback(timed_out())

    timer = reactor.callLater(timeout, expire)

    def settle(result: Any) -> None:
        if timer.active():
            timer.cancel()
        if outer.called:
            return None  # timed out already: drop the late result
        if expired:
            outer.errback(timed_out())  # the cancellation `expire` caused
        elif isinstance(result, Failure):
            outer.errback(result)
        else:
            outer.callback(result)
        return None

    inner.addBoth(settle)
    return outer
