"""The fault matrix: what the load's records say about each phase, and the checks on them."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTCOMES = ["module", "policy", "lost", "late", "wrong"]


class Records:
    """The load's records, read as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.all: list[dict[str, Any]] = []
        self._offset = 0

    def refresh(self) -> list[dict[str, Any]]:
        """Reads the lines written since the last call (whole lines only)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.all
        end = data.rfind(b"\n") + 1
        self._offset += end
        self.all += [json.loads(line) for line in data[:end].splitlines() if line]
        return self.all

    def first_after(self, since: float, part: str | None = None, coordinator: str | None = None) -> float | None:
        """When the first module answer came (on `part`, through `coordinator`) after `since`."""
        times = [
            r["done"]
            for r in self.refresh()
            if r["outcome"] == "module"
            and r["done"] >= since
            and (part is None or r["part"] == part)
            and (coordinator is None or r["coordinator"] == coordinator)
        ]
        return min(times) if times else None


@dataclass
class Row:
    """One phase: its window, its fault's span, and what came of it."""

    fault: str
    affected: str
    start: float
    fault_at: float = 0.0
    fault_end: float = 0.0
    end: float = 0.0
    recovery_s: float | None = None
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    via: Counter[str] = field(default_factory=Counter)
    #: Invocations each worker answered in the phase (its `/metrics`; after a kill, the
    #: restarted worker's count).
    workers: dict[str, int] = field(default_factory=dict)
    #: Why the policy answered (the decision logs' module outcome: `timeout`, `unavailable`).
    why: Counter[str] = field(default_factory=Counter)


def tally(rows: list[Row], records: list[dict[str, Any]], coordinators: dict[str, str], logs: list[Path]) -> None:
    """Counts each phase's decisions (by when they were sent) per part and outcome, by the
    coordinator that answered them, and why the policy answered (from the decision logs)."""
    why = failure_kinds(logs)
    for row in rows:
        sent = [r for r in records if row.start <= r["sent"] < row.end]
        for r in sent:
            row.counts.setdefault(r["part"], Counter())[r["outcome"]] += 1
            row.via[coordinators.get(r["coordinator"] or "", "none")] += 1
            if r["outcome"] == "policy":
                row.why[why.get(r["id"], "not logged")] += 1


def failure_kinds(logs: list[Path]) -> dict[str, str]:
    """Each request id decided by a failure policy, with the module's outcome (`timeout`,
    `unavailable`, ...)."""
    kinds = {}
    for log in logs:
        for line in log.read_text().splitlines() if log.exists() else []:
            record = json.loads(line)
            failed = [m["outcome"] for m in record.get("modules", []) if "policy" in m]
            if failed:
                kinds[record.get("request_id", "")] = ",".join(failed)
    return kinds


def render(rows: list[Row], parts: list[str]) -> str:
    """The matrix as a Markdown table."""
    head = "| fault | " + " | ".join(f"{p}: module / policy / lost / late" for p in parts)
    head += " | policy answered on | coordinator answering | invocations per worker | affected path | recovery |"
    lines = [head, "|" + "---|" * (len(parts) + 6)]
    for row in rows:
        cells = []
        for part in parts:
            c = row.counts.get(part, Counter())
            cells.append(f"{c['module']} / {c['policy']} / {c['lost']} / {c['late']}")
        via = ", ".join(f"{name} {n}" for name, n in sorted(row.via.items()))
        recovery = "-" if row.recovery_s is None else f"{row.recovery_s * 1000:.0f} ms"
        workers = " / ".join(f"{n}" for _, n in sorted(row.workers.items()))
        why = ", ".join(f"{kind} {n}" for kind, n in sorted(row.why.items())) or "-"
        cells += [why, via, workers, row.affected, recovery]
        lines.append(f"| {row.fault} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def duplicates(records: list[dict[str, Any]]) -> list[str]:
    """Request ids with more than one record (answered twice to the caller)."""
    return [i for i, n in Counter(r["id"] for r in records).items() if n > 1]


def missing(records: list[dict[str, Any]]) -> list[str]:
    """Request ids sent but never recorded (the load numbers them from 0)."""
    seen = {int(r["id"].split("-")[1]) for r in records}
    return [f"fm-{n}" for n in range(max(seen, default=-1) + 1) if n not in seen]


def decision_ids(log: Path) -> Counter[str]:
    """How many times one coordinator's decision log decided each request id."""
    if not log.exists():
        return Counter()
    return Counter(json.loads(line).get("request_id", "") for line in log.read_text().splitlines() if line.strip())


def problems(rows: list[Row], records: list[dict[str, Any]], logs: dict[str, Path]) -> list[str]:
    """What the run got wrong: decisions lost, late or wrong, answered or decided twice,
    missing, or a part that did not recover."""
    found = []
    for row in rows:
        for part, c in row.counts.items():
            bad = {k: c[k] for k in ("lost", "late", "wrong") if c[k]}
            if bad:
                found.append(f"{row.fault}: {part}: {bad}")
        if row.affected != "-" and row.recovery_s is None:
            found.append(f"{row.fault}: {row.affected} did not recover")
    if dup := duplicates(records):
        found.append(f"answered twice: {dup[:10]}")
    if gone := missing(records):
        found.append(f"never answered: {gone[:10]} ({len(gone)})")
    for name, log in logs.items():
        twice = [i for i, n in decision_ids(log).items() if n > 1]
        if twice:
            found.append(f"{name} decided these twice: {twice[:10]}")
    return found


def decided_by_both(logs: dict[str, Path]) -> int:
    """Request ids that both coordinators decided (a decision the bridge resent after its
    attempt on the first went unanswered: allowed, a decision is safe to resend)."""
    sets = [set(decision_ids(log)) for log in logs.values()]
    return len(set.intersection(*sets)) if sets else 0
