"""Trying a spam rule before it bites, through a real Synapse and a real client:

- a rule in `mode: audit` that would deny: the client's send succeeds, and glia's decision log
  and `glia_audit_disagreements_total` show the would-be deny;
- a rule at a 50% rollout by sender: it denies a stable half of a set of users (the same users
  on every send: the half the documented hash selects) and is audited for the rest;
- a replay of the recorded traffic against a candidate config (the audited rule enforced)
  reports exactly the decisions that change, checked against running that candidate live on
  the same traffic (a reload of glia, then the same sends again).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import (
    GLIA_TOKEN,
    Client,
    Glia,
    Synapse,
    bridge_module,
    free_port,
    http_request,
    wait_until,
)
from hosting import ORACLE, python_path_env, python_section

AUDITED = "spam-rule"
ROLLED = "pills-rule"
CALLBACK = "check_event_for_spam"
USERS = [f"roll{i}" for i in range(12)]


def rules(audited_mode: str) -> list[dict[str, Any]]:
    """Two message rules: one in `audited_mode`, one rolled out to half the senders."""
    return [
        {
            "module": "message_policy",
            "name": AUDITED,
            "mode": audited_mode,
            "config": {"blocked_keywords": ["buy followers"]},
        },
        {
            "module": "message_policy",
            "name": ROLLED,
            "rollout": {"percent": 50, "by": "sender"},
            "config": {"blocked_keywords": ["cheap pills"]},
        },
    ]


def glia_config(port: int, log: Path, audited_mode: str) -> dict[str, Any]:
    return {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "telemetry": {"decision_log": {"output": "file", "path": str(log), "include_content": True}},
        "modules": rules(audited_mode),
    }


def enforced(module: str, subject: str, percent: float) -> bool:
    """The rollout's documented share: FNV-1a (64-bit) of `module`, a zero byte and the
    subject, modulo 10,000, below the percent in hundredths."""
    value = 0xCBF29CE484222325
    for byte in module.encode() + b"\0" + subject.encode():
        value ^= byte
        value = (value * 0x100000001B3) % 2**64
    return value % 10_000 < round(percent * 100)


@dataclass
class World:
    glia: Glia
    synapse: Synapse
    log: Path
    workdir: Path
    room: str
    clients: dict[str, Client]

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def messages(self, body: str) -> list[dict[str, Any]]:
        """Decision records of `check_event_for_spam` on messages with `body`."""
        return [
            r
            for r in self.records()
            if r.get("callback") == CALLBACK and "kind" not in r and r["input"]["event"]["content"].get("body") == body
        ]

    def metric(self, name: str, module: str) -> float:
        auth = {"Authorization": f"Bearer {GLIA_TOKEN}"}
        status, _, raw = http_request("GET", f"{self.glia.url}/metrics", headers=auth)
        assert status == 200
        for line in raw.decode().splitlines():
            if line.startswith(name) and f'module="{module}"' in line and f'callback="{CALLBACK}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture(scope="module")
def world(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("audit")
    log = workdir / "decisions.jsonl"
    port = free_port()
    glia = Glia.start(glia_bin, workdir, glia_config(port, log, "audit"), port)
    synapse = Synapse.start(workdir / "synapse", [bridge_module(glia.url)])
    try:
        owner = synapse.register("auditowner")
        room = owner.create_room(preset="public_chat").body["room_id"]
        clients = {"auditowner": owner}
        for user in USERS:
            clients[user] = synapse.register(user)
            assert clients[user].join(room).status == 200
        yield World(glia, synapse, log, workdir, room, clients)
    finally:
        synapse.stop()
        glia.stop()


def test_an_audited_rule_that_would_deny_lets_the_send_through_and_records_the_deny(world: World) -> None:
    body = "buy followers, audit test"
    before = world.metric("glia_audit_disagreements_total", AUDITED)
    reply = world.clients["auditowner"].send_text(world.room, body)
    assert reply.status == 200, reply
    wait_until(lambda: len(world.messages(body)) == 1, 10, "the decision record")
    decision = world.messages(body)[0]
    assert decision["result"]["decision"] == "allow"
    assert AUDITED in decision["audited"]

    def audit() -> list[dict[str, Any]]:
        return [
            r
            for r in world.records()
            if r.get("kind") == "audit" and r["decision_id"] == decision["decision_id"] and r["module"] == AUDITED
        ]

    wait_until(lambda: len(audit()) == 1, 10, "the audit record")
    record = audit()[0]
    assert record["would"]["decision"] == "deny"
    assert record["applied"]["decision"] == "allow"
    assert record["changed"] is True
    assert world.metric("glia_audit_disagreements_total", AUDITED) == before + 1


def test_a_half_rollout_denies_a_stable_half_of_the_senders(world: World) -> None:
    body = "cheap pills, rollout test"
    expected = {user for user in USERS if enforced(ROLLED, world.clients[user].user_id, 50)}
    assert 2 <= len(expected) <= 10, "the documented hash splits these users"
    for _ in range(2):
        denied = set()
        for user in USERS:
            reply = world.clients[user].send_text(world.room, body)
            assert reply.status in (200, 403), reply
            if reply.status == 403:
                denied.add(user)
        assert denied == expected, "the enforced half is the documented one, on every send"


def replay(glia_bin: Path, candidate: Path, log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [str(glia_bin), "replay", "--json", "--config", str(candidate), str(log)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_replay_reports_what_the_candidate_changes_live(world: World, glia_bin: Path) -> None:
    bodies = ["hello there", "buy followers cheap", "cheap pills and buy followers", "lunch?"]
    senders = USERS[:6]
    recorded = world.workdir / "recorded.jsonl"
    start = len(world.records())
    traffic(world, senders, bodies)
    wait_until(lambda: sum(len(world.messages(b)) for b in bodies) >= len(senders) * len(bodies), 10, "records")
    lines = [json.dumps(r) for r in world.records()[start:]]
    recorded.write_text("\n".join(lines) + "\n")

    candidate = world.workdir / "candidate.yaml"
    port = world.glia.port
    candidate.write_text(yaml.safe_dump(glia_config(port, world.workdir / "unused.jsonl", "enforce")))
    report = replay(glia_bin, candidate, recorded)

    # The candidate live: the audited rule enforced, by a reload of the running glia.
    live_config = glia_config(port, world.log, "enforce")
    world.glia.config_path.write_text(yaml.safe_dump(live_config))
    status, _, raw = http_request(
        "POST", f"{world.glia.url}/_glia/v1/admin/reload", b"", {"Authorization": f"Bearer {GLIA_TOKEN}"}
    )
    assert status == 200, raw
    live_start = len(world.records())
    traffic(world, senders, bodies)
    wait_until(lambda: len(world.records()) - live_start >= len(senders) * len(bodies), 10, "live records")
    live = decisions_by_message(world.records()[live_start:])
    was = decisions_by_message(world.records()[start:live_start])

    changed_live = {key for key in was if was[key] != live[key]}
    assert changed_live, "promoting the rule changes some decisions"
    by_line = {i + 1: json.loads(line) for i, line in enumerate(lines)}
    changed_replay = {message_key(by_line[c["line"]]) for c in report["changes"]}
    assert changed_replay == changed_live
    for change in report["changes"]:
        key = message_key(by_line[change["line"]])
        assert change["replayed"]["decision"] == live[key]
        assert change["change"] == "allow_to_deny"
        assert change["module"] == AUDITED
    assert report["by_module"] == {AUDITED: len(changed_live)}


def traffic(world: World, senders: list[str], bodies: list[str]) -> None:
    for user in senders:
        for body in bodies:
            reply = world.clients[user].send_text(world.room, body)
            assert reply.status in (200, 403), reply


def message_key(record: dict[str, Any]) -> tuple[str, str]:
    event = record["input"]["event"]
    return event["sender"], event["content"].get("body", "")


def decisions_by_message(records: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Each message's decision (messages are unique by sender and body in one run)."""
    out = {}
    for r in records:
        if r.get("callback") == CALLBACK and "kind" not in r and r["input"]["event"]["type"] == "m.room.message":
            out[message_key(r)] = r["result"]["decision"]
    return out


def test_a_replay_runs_a_candidates_python_module_in_its_host(world: World, glia_bin: Path) -> None:
    """The candidate adds a Python module (a do-nothing spam checker, in a host the replay
    starts): every recorded decision is re-decided through it, and none changes."""
    recorded = world.workdir / "recorded-python.jsonl"
    # Decisions made while the rule was audited (the replay test enforced it later).
    lines = [json.dumps(r) for r in world.records() if AUDITED in r.get("audited", [])]
    assert lines, "recorded decisions"
    recorded.write_text("\n".join(lines) + "\n")
    config = glia_config(free_port(), world.workdir / "unused.jsonl", "audit")
    config["modules"].append({"module": "scripted_synapse.DoNothingSpamChecker", "name": "hosted-noop"})
    config["python"] = python_section("localhost")
    candidate = world.workdir / "candidate-python.yaml"
    candidate.write_text(yaml.safe_dump(config))
    report = replay(glia_bin, candidate, recorded, env=python_path_env(ORACLE))
    assert report["replayed"] == len(lines)
    assert report["changed"] == 0, report["changes"][:3]
