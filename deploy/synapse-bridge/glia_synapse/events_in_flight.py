"""The events Synapse handed to a callback that is still waiting for glia's answer, by event
id: the live objects a hosted module's change to `soft_failed` is written back to.

A module in Synapse's process gets Synapse's own event object, and some set
`event.internal_metadata.soft_failed = True` on it (synapse-simple-antispam's `soft_fail`
does, in `check_event_for_spam`): Synapse then persists the event soft-failed, and clients are
not served it. A module hosted by glia gets a copy. When it changes the flag, the Python host
tells the bridge over the ModuleApi channel (`module_api_calls.SET_SOFT_FAILED`) before it
answers, so while the bridge's callback still awaits glia's answer, and the bridge sets the
flag on Synapse's event, held here for as long as the callback runs.

Events are held only in the process that serves the ModuleApi channel (Synapse's main
process): a callback running on a worker has nothing here for the host to reach.
"""

from __future__ import annotations

from typing import Any


class EventsInFlight:
    """Events of callbacks in flight, by event id (one reactor thread: no locking)."""

    def __init__(self) -> None:
        self._events: dict[str, list[Any]] = {}

    def hold(self, event: Any) -> str | None:
        """Holds `event` until `release`; returns the id it is held by (None: not held)."""
        event_id = getattr(event, "event_id", None)
        if not isinstance(event_id, str) or not hasattr(event, "internal_metadata"):
            return None
        self._events.setdefault(event_id, []).append(event)
        return event_id

    def release(self, event_id: str, event: Any) -> None:
        """Stops holding `event` (the very object) under `event_id`."""
        held = self._events.get(event_id)
        if held is None:
            return
        for i, candidate in enumerate(held):
            if candidate is event:
                del held[i]
                break
        if not held:
            del self._events[event_id]

    def set_soft_failed(self, event_id: str, soft_failed: bool) -> int:
        """Sets `internal_metadata.soft_failed` on every held event with that id; returns
        how many there were."""
        held = self._events.get(event_id, [])
        for event in held:
            event.internal_metadata.soft_failed = soft_failed
        return len(held)

    def __len__(self) -> int:
        return sum(len(held) for held in self._events.values())


#: The bridge's events in flight (one bridge per Synapse process).
IN_FLIGHT = EventsInFlight()
