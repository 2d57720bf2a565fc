"""A real Prometheus on loopback (Debian's `prometheus`), for tests/e2e/test_prometheus.py: it
scrapes the targets it is given every second, evaluates rule files every second, and answers
its HTTP API (instant queries, label values, targets, rules, alerts)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from harness import Process, free_port, http_request, responds, wait_until


def prometheus_binary() -> str:
    """`prometheus` from PATH; fails with how to get it when it is missing."""
    found = shutil.which("prometheus")
    if found is None:
        raise RuntimeError(
            "prometheus not found on PATH: install it with `apt-get install prometheus` (Debian/Ubuntu; "
            "tests/run-all does so when it runs as root) or from https://prometheus.io/download/"
        )
    return found


@dataclass
class Prometheus:
    """A running Prometheus."""

    process: Process
    url: str

    @classmethod
    def start(cls, workdir: Path, jobs: dict[str, list[str]], rule_files: list[Path]) -> Prometheus:
        """Starts Prometheus scraping `jobs` (job name to `host:port` targets) with `rule_files`,
        and waits until it is ready. Prometheus cannot say which port it picked, so it gets a free
        one (as Synapse does in the harness)."""
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(f) for f in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": t}]} for job, t in jobs.items()],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        process = Process(
            "prometheus",
            [
                prometheus_binary(),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
        ).start()
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: responds(f"{url}/-/ready") or not process.running(), 30, "Prometheus start-up", process.tail)
        if not process.running():
            raise RuntimeError(f"Prometheus exited at start-up\n{process.tail()}")
        return cls(process, url)

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/{path}: its `data`; fails on an error answer (a query that does not parse)."""
        query = f"?{urlencode(params)}" if params else ""
        status, _, body = http_request("GET", f"{self.url}/api/v1/{path}{query}")
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"Prometheus answered {status} to {path} {params}: {body[:500]!r}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def firing(self) -> set[tuple[str, str]]:
        """(alert name, module label) of every firing alert."""
        return {
            (a["labels"]["alertname"], a["labels"].get("module", ""))
            for a in self.api("alerts")["alerts"]
            if a["state"] == "firing"
        }

    def stop(self) -> None:
        self.process.stop()
