"""The glia of the worker-deployment tests, one config for the deployment and for the
single-process Synapse it is compared with: the seed modules in glia's process,
`list_spam_checker` placed on NATS (served by a `glia worker`), and two modules hosted in
glia's Python hosts: the counter of `on_new_event` (`oracle/new_event_log.py`) and the
scripted module s1 (`oracle/scripted_synapse.py`), whose fixed script denies some joins and
some events. Every decision goes to a decision log file of its own.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import Glia, NatsServer, Process, free_port, glia_config
from hosting import ORACLE, python_path_env, python_section

#: The module placed on NATS: it denies the messages of `@spammer:localhost`.
NATS_MODULE = "list_spam_checker"
#: The scripted module's name in glia and in its script.
SCRIPTED = "s1"
#: Joins of users whose id contains this are denied by the hosted module.
BANNED = "banned"
#: Events whose body contains this are refused by the hosted module's `check_event_allowed`.
FORBIDDEN_WORD = "forbidden-word"
#: What s1 does (scripted_common's script format).
SCRIPT = {
    SCRIPTED: {
        "user_may_join_room": {
            "if": {"arg": "user_id", "contains": BANNED},
            "then": {"return": {"codes": "M_FORBIDDEN"}},
        },
        "check_event_allowed": {
            "if": {"arg": "event.content.body", "contains": FORBIDDEN_WORD},
            "then": {"return": {"event_allowed": [False, None]}},
        },
    }
}
SCRIPTED_CALLBACKS = ("user_may_join_room", "check_event_allowed", "on_profile_update")
COUNTER = "new_event_log.NewEventLog"


@dataclass(frozen=True)
class GliaFiles:
    """Where one glia's modules and decision log write."""

    directory: Path

    @property
    def counter(self) -> Path:
        """The counter's event log (`new_event_log`)."""
        return self.directory / "new-events.log"

    @property
    def decisions(self) -> Path:
        return self.directory / "decisions.jsonl"

    @property
    def script(self) -> Path:
        return self.directory / "script.json"

    @property
    def calls(self) -> Path:
        return self.directory / "calls.jsonl"


def counter_module(log: Path) -> dict[str, Any]:
    """glia's entry for the hosted counting module."""
    return {"module": COUNTER, "name": "new_event_log", "config": {"path": str(log)}}


def scripted_module(files: GliaFiles) -> dict[str, Any]:
    """glia's entry for the hosted scripted module, reading `SCRIPT`."""
    files.script.write_text(json.dumps(SCRIPT))
    config = {"name": SCRIPTED, "script": str(files.script), "calls": str(files.calls)}
    return {
        "module": "scripted_synapse.ScriptedModule",
        "name": SCRIPTED,
        "config": {**config, "callbacks": list(SCRIPTED_CALLBACKS)},
    }


def deployment_glia_config(port: int, nats_url: str, files: GliaFiles) -> dict[str, Any]:
    """The glia config both runs share (only the port and the files differ)."""
    config = glia_config(port, "http://127.0.0.1:9", censor=False)  # no event_censorer: no censor
    config["bus"] = {"type": "nats", "url": nats_url}
    for module in config["modules"]:
        if module["module"] == NATS_MODULE:
            module["placement"] = "nats"
    config["python"] = python_section("localhost")
    config["modules"] += [counter_module(files.counter), scripted_module(files)]
    config["telemetry"] = {"decision_log": {"output": "file", "path": str(files.decisions)}}
    return config


def prepare_glia(glia_bin: Path, files: GliaFiles, nats_url: str) -> Glia:
    """A glia with the shared config, not started (`Glia.restart` starts it)."""
    files.directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = deployment_glia_config(port, nats_url, files)
    return Glia.prepare(glia_bin, files.directory, config, port, env=python_path_env(ORACLE))


def start_nats_worker(glia_bin: Path, nats: NatsServer, directory: Path) -> Process:
    """A `glia worker` serving the NATS-placed module, once it serves."""
    directory.mkdir(parents=True, exist_ok=True)
    entry = next(m for m in glia_config(0, "", censor=False)["modules"] if m["module"] == NATS_MODULE)
    config = {"bus": {"type": "nats", "url": nats.url}, "modules": [{**entry, "placement": "nats"}]}
    path = directory / "worker.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    worker = Process("glia-worker", [str(glia_bin), "worker", "--config", str(path)], directory / "worker.log")
    worker.start().wait_logged("serving", 30, "glia worker start-up")
    return worker


def start_all(glias: Iterable[Glia]) -> None:
    """Starts prepared glias together (each loads Python hosts), then waits for each."""
    for glia in glias:
        glia.process.start()
    for glia in glias:
        glia.wait()


# -- the decision log ------------------------------------------------------------------------


def decisions(path: Path, skip: int = 0) -> list[dict[str, Any]]:
    """The decision records in `path`, after the first `skip` lines (audit records aside)."""
    try:
        lines = path.read_text().splitlines()[skip:]
    except FileNotFoundError:
        return []
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if r.get("kind") != "audit"]


def lines(path: Path) -> int:
    """How many lines `path` has (0 when it does not exist yet)."""
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def by_callback(records: Iterable[dict[str, Any]]) -> collections.Counter[tuple[str, str, str | None]]:
    """How many records decided what, by callback: (callback, decision, errcode)."""
    return collections.Counter((r["callback"], r["result"]["decision"], r["result"].get("errcode")) for r in records)
