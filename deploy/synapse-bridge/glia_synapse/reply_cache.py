"""Replies glia says hold for a while (`valid_until_ms`), reused until then and never after.

Only `is_user_expired` has such replies today: a module that knows a user's expiry date in
advance says its "not expired" holds until that date, and Synapse, which asks on every
authenticated request, gets the same answer from here without a round trip. Failures are
never stored: only replies glia decided.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: Keys kept at most; past it, lapsed entries are dropped, then the oldest.
MAX_ENTRIES = 100_000


class ReplyCache:
    """One callback's lasting replies, by the value of its key parameter (e.g. the user id)."""

    def __init__(self, clock_ms: Callable[[], float] | None = None, max_entries: int = MAX_ENTRIES) -> None:
        self._clock_ms = clock_ms or (lambda: time.time() * 1000)
        self._max = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> tuple[Any] | None:
        """`(value,)` while the reply stored for `key` holds, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        until, value = entry
        if self._clock_ms() < until:
            return (value,)
        del self._entries[key]
        return None

    def put(self, key: str, value: Any, valid_until_ms: Any) -> None:
        """Stores `value` for `key` until `valid_until_ms` (milliseconds since the epoch), if
        that is a time still to come; forgets any earlier reply otherwise."""
        if isinstance(valid_until_ms, bool) or not isinstance(valid_until_ms, int):
            self._entries.pop(key, None)
            return
        now = self._clock_ms()
        if valid_until_ms <= now:
            self._entries.pop(key, None)
            return
        if key not in self._entries and len(self._entries) >= self._max:
            self._make_room(now)
        self._entries[key] = (valid_until_ms, value)

    def _make_room(self, now: float) -> None:
        self._entries = {k: e for k, e in self._entries.items() if now < e[0]}
        while len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]

    def __len__(self) -> int:
        return len(self._entries)
