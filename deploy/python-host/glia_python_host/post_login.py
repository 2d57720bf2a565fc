"""Post-login callbacks: an auth checker may return `(user_id, callback)`, and Synapse awaits
`callback(login_result)` once the login completes. The host keeps each callback under a
random handle that glia's answer carries; the bridge hands Synapse a stand-in that sends the
login result back (a `post_login` call), and the host then awaits the module's own callback.

Bounded: a handle lives `TTL_S` seconds and the table holds at most `MAX_HELD` callbacks (the
oldest go first), so a login that never completes (refused after the check, the client gone)
leaks nothing. A handle is taken once.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: How long a callback waits for its login to complete. Synapse completes a login within the
#: same request (registering the device), so this is far more than a login needs.
TTL_S = 300.0
#: The most callbacks held at once.
MAX_HELD = 10_000


class PostLogins:
    """The callbacks held, by handle, oldest first."""

    def __init__(self, ttl_s: float = TTL_S, max_held: int = MAX_HELD, clock: Callable[[], float] = time.monotonic):
        self._ttl_s = ttl_s
        self._max_held = max_held
        self._clock = clock
        self._held: OrderedDict[str, tuple[float, Callable[..., Any]]] = OrderedDict()

    def keep(self, callback: Callable[..., Any]) -> str:
        """Holds `callback`; returns its handle."""
        self._expire()
        while len(self._held) >= self._max_held:
            handle, _ = self._held.popitem(last=False)
            logger.warning("dropping post-login callback %s: %d are held, the most kept", handle, self._max_held)
        handle = secrets.token_hex(16)
        self._held[handle] = (self._clock() + self._ttl_s, callback)
        return handle

    def take(self, handle: str) -> Callable[..., Any] | None:
        """The callback held under `handle`, no longer held; `None` when it is unknown or expired."""
        self._expire()
        held = self._held.pop(handle, None)
        return held[1] if held is not None else None

    def __len__(self) -> int:
        self._expire()
        return len(self._held)

    def _expire(self) -> None:
        now = self._clock()
        while self._held:
            handle, (expires, _) = next(iter(self._held.items()))
            if expires > now:
                return
            del self._held[handle]
            logger.info("post-login callback %s expired: its login did not complete", handle)
