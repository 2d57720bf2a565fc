"""glia's monitoring artifacts against a real Prometheus: `glia serve` and a `glia worker` on a
real nats-server, scraped every second by Prometheus with deploy/prometheus/glia.rules.yml
loaded, while traffic runs through the chaos module (a crash loop, a module that fails, one on
the worker that times out) and a module no worker serves. Asserts through Prometheus's HTTP API
that every query of deploy/grafana/glia.json parses and returns data, that every rule evaluates
without error, and that the crash-loop alert (and the failed-module, no-worker and audit alerts) fire.

The rules are loaded as written except their `for:` durations, shortened to 1 s so that alerts
fire within seconds (promtool's unit tests, deploy/prometheus/glia.rules.test.yml, check the
durations themselves).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ROOT, NatsServer, Process, free_port, http_request, wait_until
from prometheus import Prometheus

DASHBOARD = ROOT / "deploy" / "grafana" / "glia.json"
RULES = ROOT / "deploy" / "prometheus" / "glia.rules.yml"
#: What Grafana puts in place of the dashboard's variables: every job and instance ("All"), and a
#: bucket that holds several of the test's 1 s scrapes.
VARIABLES = {"$job": ".*", "$instance": ".*", "$bucket_size": "15s"}
#: The alerts the scenario must raise, with the module each is about.
EXPECTED_ALERTS = {
    ("GliaModuleCrashLooping", "crashloop"),
    ("GliaModuleFailed", "doomed"),
    ("GliaWorkerPoolUnavailable", "absent"),
    ("GliaAuditWouldChangeMany", "strict"),
}
#: How long traffic may run before everything above is seen (a bound, not a measure: it is
#: usually seen within 10 to 20 s).
PATIENCE_S = 120


def glia_config(nats_url: str, collector: str) -> dict[str, Any]:
    """One config for the coordinator and the worker."""
    invite = "user_may_invite"
    return {
        "bus": {"type": "nats", "url": nats_url},
        # An OTLP collector nobody listens on: spans are dropped and counted.
        "telemetry": {"traces": {"exporter": "otlp", "protocol": "grpc", "endpoint": collector}},
        "defaults": {"failure_policy": {"default": "allow"}},
        "modules": [
            # Panics on every invocation and is rebuilt at once, without end: a crash loop.
            {
                "module": "chaos",
                "name": "crashloop",
                "restart": {"intensity": 100000, "period": "10s", "backoff_min": "5ms", "backoff_max": "20ms"},
                "config": {"callbacks": {invite: {"answer": "NOT_SPAM", "panic": 1.0}}},
            },
            # Panics past its restart intensity: failed, and stays so (its failure policy is
            # `error`, so some decisions are errors).
            {
                "module": "chaos",
                "name": "doomed",
                "failure_policy": "error",
                "restart": {"intensity": 2, "period": "1m", "cooldown": "1h"},
                "config": {"callbacks": {"user_may_create_room": {"answer": True, "panic": 1.0}}},
            },
            # On the worker: answers 30% of invocations late, past its timeout.
            {
                "module": "chaos",
                "name": "flaky",
                "placement": "nats",
                "timeout": "100ms",
                "config": {
                    "seed": 3,
                    "callbacks": {
                        invite: {"answer": "NOT_SPAM", "delay": {"probability": 0.3, "min_ms": 150, "max_ms": 300}}
                    },
                },
            },
            # Placed on NATS, served by nobody: no responders.
            {"module": "remote", "name": "absent", "placement": "nats", "callbacks": [invite]},
            {"module": "user_restrictions", "config": {"rules": [{"match": "@guest-.*", "deny": ["invite"]}]}},
            # A rule being tried: it would refuse every invite but is only audited, so it would
            # change most decisions (the audit panel and GliaAuditWouldChangeMany).
            {
                "module": "user_restrictions",
                "name": "strict",
                "mode": "audit",
                "config": {"rules": [{"match": ".*", "deny": ["invite"]}]},
            },
        ],
    }


def start_glia(binary: Path, workdir: Path, argv: list[str], name: str) -> tuple[Process, str]:
    """Starts `glia ARGV` on a port it picks, and returns it with the address it serves on."""
    process = Process(name, [str(binary), *argv], workdir / f"{name}.log").start()
    pattern = re.compile(r"serving (?:GET /metrics )?on http://(127\.0\.0\.1:\d+)")
    found: list[str] = []

    def serving() -> bool:
        found[:] = pattern.findall(process.log_path.read_text(errors="replace"))
        return bool(found) or not process.running()

    wait_until(serving, 30, f"{name} start-up", process.tail)
    if not process.running():
        raise RuntimeError(f"{name} exited at start-up\n{process.tail()}")
    return process, found[0]


@dataclass
class World:
    """The processes under test."""

    glia: str
    prometheus: Prometheus


@pytest.fixture(scope="module")
def monitored(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("prometheus")
    started: list[Any] = []
    try:
        nats = NatsServer.start(workdir)
        started.append(nats)
        config = workdir / "glia.yaml"
        config.write_text(yaml.safe_dump(glia_config(nats.url, f"http://127.0.0.1:{free_port()}"), sort_keys=False))
        coordinator, glia = start_glia(
            glia_bin, workdir, ["serve", "--config", str(config), "--listen", "127.0.0.1:0"], "glia"
        )
        started.append(coordinator)
        worker, worker_metrics = start_glia(
            glia_bin,
            workdir,
            ["worker", "--config", str(config), "--metrics-listen", "127.0.0.1:0"],
            "glia-worker",
        )
        started.append(worker)
        rules = workdir / "glia.rules.yml"
        rules.write_text(re.sub(r"(?m)^(\s+for:) \S+$", r"\1 1s", RULES.read_text()))
        prometheus = Prometheus.start(workdir, {"glia": [glia], "glia-worker": [worker_metrics]}, [rules])
        started.append(prometheus)
    except RuntimeError as e:
        for p in reversed(started):
            p.stop()
        pytest.fail(str(e), pytrace=False)
    yield World(f"http://{glia}", prometheus)
    for p in reversed(started):
        p.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression with the variables filled in) of every panel's targets."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if "expr" in target:
                expr = target["expr"]
                for name, value in VARIABLES.items():
                    expr = expr.replace(name, value)
                queries.append((panel["title"], expr))
    assert len(queries) >= 15, queries
    return queries


def drive(glia: str, round_: int) -> None:
    """One round of traffic: invites (every module but doomed) and room creations (doomed)."""
    for i in range(40):
        inviter = f"@{'guest-' if i % 5 == 0 else 'user'}{round_}x{i}:example.com"
        args = {"inviter": inviter, "invitee": "@b:example.com", "room_id": "!r:example.com"}
        status, _, body = http_request("POST", f"{glia}/_glia/v1/callbacks/user_may_invite", args)
        assert status == 200, body
    for i in range(3):
        args = {"user_id": f"@u{round_}x{i}:example.com", "room_config": {}}
        status, _, body = http_request("POST", f"{glia}/_glia/v1/callbacks/user_may_create_room", args)
        assert status == 200, body


def test_dashboard_queries_and_alerts_on_a_real_prometheus(monitored: World) -> None:
    prom = monitored.prometheus
    queries = dashboard_queries()
    empty: list[tuple[str, str]] = queries
    firing: set[tuple[str, str]] = set()
    deadline = time.monotonic() + PATIENCE_S
    round_ = 0
    while time.monotonic() < deadline:
        drive(monitored.glia, round_)
        round_ += 1
        # A query that does not parse fails here at once (Prometheus answers 400).
        empty = [(title, expr) for title, expr in queries if not prom.query(expr)]
        firing = prom.firing()
        if not empty and firing >= EXPECTED_ALERTS:
            break
        time.sleep(0.5)
    assert not empty, f"dashboard queries without data after {round_} rounds: {empty}"
    assert firing >= EXPECTED_ALERTS, f"firing: {sorted(firing)}; expected at least {sorted(EXPECTED_ALERTS)}"

    # Both processes are scraped, and each serves its own modules' metrics.
    targets = prom.api("targets")["activeTargets"]
    assert {(t["labels"]["job"], t["health"]) for t in targets} == {("glia", "up"), ("glia-worker", "up")}, targets
    worker_modules = {s["metric"]["module"] for s in prom.query('glia_module_state{job="glia-worker"}')}
    assert worker_modules == {"flaky"}, worker_modules
    assert prom.query('sum(glia_module_restarts_total{module="crashloop"}) > 10')
    assert prom.query('sum(glia_invocations_total{module="flaky",outcome="timeout"}) > 0')
    assert prom.query('sum(glia_spans_dropped_total{job="glia"}) > 0')

    # The dashboard's variables find both jobs and both instances.
    jobs = prom.api("label/job/values", **{"match[]": "glia_dispatches_in_flight"})
    assert sorted(jobs) == ["glia", "glia-worker"], jobs

    # Every rule group loaded, and every rule evaluates without error; the recording rules
    # have data.
    groups = prom.api("rules")["groups"]
    assert {g["name"] for g in groups} == {"glia.recording", "glia.alerts"}, groups
    broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not broken, broken
    for rule in next(g for g in groups if g["name"] == "glia.recording")["rules"]:
        assert prom.query(rule["name"]), f"recording rule {rule['name']} has no data"
