"""Replies glia says hold for a while (`valid_until_ms`), reused until then and never after,
and only while glia still runs the routing that decided them.

Only `is_user_expired` has such replies today: a module that knows a user's expiry date in
advance says its "not expired" holds until that date, and Synapse, which asks on every
authenticated request, gets the same answer from here without a round trip. Failures are
never stored: only replies glia decided.

A reload of glia's config can change what a module would answer (an expiry date moved), so
every lasting reply names the generation of glia's routing it was decided under, and every
callback response the generation in force (`Glia-Generation`). A stored reply is reused only
while the last response heard named its generation, and only if that response came within
`FRESH_S`: a reload ends the reuse of older replies with the next response from glia, and at
the latest `FRESH_S` after it (a quiet process asks glia again rather than trust old news).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: Keys kept at most; past it, lapsed entries are dropped, then the oldest.
MAX_ENTRIES = 100_000

#: Seconds after glia's last response that its generation is still trusted.
FRESH_S = 1.0


class Generations:
    """The generation of glia's routing named by the last callback response, and when."""

    def __init__(self, clock: Callable[[], float] | None = None, fresh_s: float = FRESH_S) -> None:
        self._clock = clock or time.monotonic
        self._fresh_s = fresh_s
        self._current: str | None = None
        self._heard_at = 0.0

    def seen(self, generation: str | None) -> None:
        """Records a callback response's `Glia-Generation` (None: the response had none)."""
        if generation is not None:
            self._current = generation
            self._heard_at = self._clock()

    @property
    def current(self) -> str | None:
        """The generation last heard of, however long ago."""
        return self._current

    def holding(self) -> str | None:
        """The generation whose lasting replies may be reused now: the last one heard of,
        if it was heard of within `fresh_s`."""
        if self._current is None or self._clock() - self._heard_at > self._fresh_s:
            return None
        return self._current


class ReplyCache:
    """One callback's lasting replies, by the value of its key parameter (e.g. the user id)."""

    def __init__(
        self,
        generations: Generations,
        clock_ms: Callable[[], float] | None = None,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._generations = generations
        self._clock_ms = clock_ms or (lambda: time.time() * 1000)
        self._max = max_entries
        self._entries: dict[str, tuple[float, str, Any]] = {}

    def get(self, key: str) -> tuple[Any] | None:
        """`(value,)` while the reply stored for `key` holds, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        generation = self._generations.holding()
        if generation is None:
            return None  # not heard from glia lately: the entry may still be good
        until, decided_under, value = entry
        if decided_under == generation and self._clock_ms() < until:
            return (value,)
        del self._entries[key]
        return None

    def put(self, key: str, value: Any, valid_until_ms: Any, generation: Any) -> None:
        """Stores `value` for `key` until `valid_until_ms` (milliseconds since the epoch), if
        that is a time still to come and `generation` is the one glia's response named;
        forgets any earlier reply otherwise."""
        if (
            isinstance(valid_until_ms, bool)
            or not isinstance(valid_until_ms, int)
            or not isinstance(generation, str)
            or generation != self._generations.current
        ):
            self._entries.pop(key, None)
            return
        now = self._clock_ms()
        if valid_until_ms <= now:
            self._entries.pop(key, None)
            return
        if key not in self._entries and len(self._entries) >= self._max:
            self._make_room(now)
        self._entries[key] = (valid_until_ms, generation, value)

    def _make_room(self, now: float) -> None:
        current = self._generations.current
        self._entries = {k: e for k, e in self._entries.items() if now < e[0] and e[1] == current}
        while len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]

    def __len__(self) -> int:
        return len(self._entries)
