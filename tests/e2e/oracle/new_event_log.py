"""A Synapse module for the worker-deployment tests: writes down every event `on_new_event`
hands it, so a test can count how often each event reached it.

Each call appends one line, `<event_id> <room_id> <instance that persisted it>`, to the file named by
its config's `path` (one `write` of a short line in append mode, so lines from concurrent
calls never interleave).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synapse.module_api import ModuleApi


class NewEventLog:
    """Registers `on_new_event`, which logs each event it is handed."""

    def __init__(self, config: Mapping[str, Any], api: ModuleApi) -> None:
        self._path = str(config["path"])
        api.register_third_party_rules_callbacks(on_new_event=self.on_new_event)

    @staticmethod
    def parse_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
        """Takes the config as it is (`path`: the file to append to)."""
        return config

    async def on_new_event(self, event: Any, state_events: Any) -> None:
        """Appends the event's id, room and persister."""
        persister = getattr(event.internal_metadata, "instance_name", None)
        with open(self._path, "a") as log:
            log.write(f"{event.event_id} {event.room_id} {persister}\n")


def read(path: str) -> list[tuple[str, str, str]]:
    """The (event id, room id, persister) lines written so far."""
    try:
        with open(path) as log:
            text = log.read()
    except FileNotFoundError:
        return []
    return [tuple(line.split(" ", 2)) for line in text.splitlines() if line]  # type: ignore[misc]
