"""Which process forwards a notification that Synapse invokes in every process.

Synapse calls `on_new_event` in the process that persisted the event and again in every
other process that hears of it over replication (catalogue `EVERY`), so a bridge in each
process would hand glia the same event once per process. With `notifications: once` (the
default) each bridge forwards such a callback only when its rule below says this process is
the one; the others return at once, as a module that did nothing.

The rules name a process from the occurrence itself, not from a designated process: each
event is persisted by exactly one event persister, which stamps its instance name on the
event, and a persister that is down persists nothing meanwhile, so no event goes without a
forwarding process and a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: Synapse's instance name for the main process (`synapse.config.workers`).
MAIN_PROCESS = "master"

#: Whether this process (its instance name) forwards one invocation (its arguments by name).
Rule = Callable[[Mapping[str, Any], str], bool]


def instance_name(worker_name: str | None) -> str:
    """Synapse's instance name of a process from `ModuleApi.worker_name`."""
    return worker_name or MAIN_PROCESS


def persisted_here(args: Mapping[str, Any], instance: str) -> bool:
    """Whether this process persisted the event: Synapse notifies modules there exactly as a
    single process does. An event without a persister's name (never seen from a persisted
    event) is forwarded, so that nothing is lost."""
    persister = getattr(getattr(args.get("event"), "internal_metadata", None), "instance_name", None)
    return persister is None or persister == instance


#: The rule for every callback the catalogue marks `EVERY`.
FORWARDED_BY: dict[str, Rule] = {"on_new_event": persisted_here}
