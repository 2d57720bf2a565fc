"""glia spread over the hosts of `netns.Network`, each part's processes in its own namespace.

- `nats1`..`nats3`: a nats-server cluster, each routed to the two others, not advertising
  the cluster to clients (a client keeps to the URLs its config names, so the lag proxy stays
  on its link);
- `coord1`, `coord2`: `glia serve`, both modules placed on NATS, each with its decision log;
- `worker1`, `worker2`: `glia worker` serving `demo` (a Rust module); `worker2` reaches NATS
  only through `lagproxy.py` in its own namespace, forwarding to `nats2`;
- `python`: `glia-python-host serve` with `domain_rules`, the real synapse-domain-rule-checker;
- `synapse`: `loadgen.py`, the bridge's client sending decisions to both coordinators.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from harness import GLIA_TOKEN, Process, glia_binary, http_request, nats_server_binary, responds, wait_until

from netns import Network, in_host

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HOSTS = ["synapse", "coord1", "coord2", "nats1", "nats2", "nats3", "worker1", "worker2", "python"]
NATS_HOSTS = ["nats1", "nats2", "nats3"]
COORDINATORS = ["coord1", "coord2"]
WORKERS = ["worker1", "worker2"]
HTTP_PORT = 8787
METRICS_PORT = 9090
#: glia's whole-request deadline; the bridge's (the load's) is longer, so glia answers first.
GLIA_DEADLINE_S = 3
#: The load's deadline: the bridge's `timeout`.
BRIDGE_DEADLINE_S = 5
#: Each module's timeout: an invocation lost with a worker waits this long for its policy.
MODULE_TIMEOUT = "1s"
DEMO = {
    "module": "demo",
    "placement": "nats",
    "timeout": MODULE_TIMEOUT,
    "failure_policy": "allow",
    "callbacks": ["user_may_create_room"],
}
DOMAIN_RULES = {
    "module": "synapse_domain_rule_checker.DomainRuleChecker",
    "name": "domain_rules",
    "placement": "nats",
    "timeout": MODULE_TIMEOUT,
    "failure_policy": "allow",
    "callbacks": ["user_may_join_room"],
    "config": {"can_invite_if_not_in_domain_mapping": True, "can_only_join_rooms_with_invite": True},
}


@dataclass
class Deployment:
    """The running processes, by host, and where their files are."""

    net: Network
    workdir: Path
    processes: dict[str, list[Process]] = field(default_factory=dict)

    def url(self, host: str, port: int = HTTP_PORT) -> str:
        """`http://<host's address>:<port>`."""
        return f"http://{self.net.ip(host)}:{port}"

    def nats_urls(self) -> list[str]:
        """The cluster's client URLs, as every part but `worker2` is given them."""
        return [f"nats://{self.net.ip(h)}:4222" for h in NATS_HOSTS]

    def start(self, host: str, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        """Starts `argv` in `host`'s namespace, its output in `workdir/<name>.log`."""
        process = Process(name, in_host(host, argv), self.workdir / f"{name}.log", env=env).start()
        self.processes.setdefault(host, []).append(process)
        return process

    def forget(self, host: str) -> None:
        """Reaps the processes of a killed host."""
        for process in self.processes.pop(host, []):
            process.stop(timeout=5)

    def stop_all(self) -> None:
        """Stops every process still running."""
        for host in list(self.processes):
            self.forget(host)

    def write_config(self, name: str, config: dict[str, Any]) -> Path:
        """Writes a glia config for one host; returns its path."""
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # -- the parts -------------------------------------------------------------------------

    def start_nats(self, host: str) -> None:
        """One member of the cluster, routed to the other two."""
        routes = ",".join(f"nats://{self.net.ip(h)}:6222" for h in NATS_HOSTS if h != host)
        argv = [nats_server_binary(), "-a", "0.0.0.0", "-p", "4222", "-m", "8222", "-n", host]
        argv += ["--cluster_name", "gfm", "--cluster", "nats://0.0.0.0:6222", "--routes", routes, "--no_advertise"]
        self.start(host, host, argv)

    def routes(self, host: str) -> int:
        """How many routes `host`'s nats-server has (-1 when it does not answer)."""
        try:
            status, _, body = http_request("GET", f"{self.url(host, 8222)}/routez", timeout=1)
        except OSError:
            return -1
        return int(json.loads(body).get("num_routes", 0)) if status == 200 else -1

    def clients(self, host: str) -> list[str]:
        """The names of the clients connected to `host`'s nats-server."""
        status, _, body = http_request("GET", f"{self.url(host, 8222)}/connz?limit=1024", timeout=2)
        assert status == 200, body
        return [c.get("name", "") for c in json.loads(body).get("connections", [])]

    def wait_cluster(self) -> None:
        """Waits until every node has its routes to the two others."""
        wait_until(
            lambda: all(self.routes(h) >= 2 for h in NATS_HOSTS),
            30,
            "the NATS cluster's routes",
            lambda: "\n".join(p.tail(10) for h in NATS_HOSTS for p in self.processes.get(h, [])),
        )

    def base_config(self, urls: list[str]) -> dict[str, Any]:
        """What every host's config shares: token, deadline, the bus on `urls`, Python."""
        return {
            "auth_token": GLIA_TOKEN,
            "deadline": f"{GLIA_DEADLINE_S}s",
            "shutdown_grace": "1s",
            "bus": {"type": "nats", "url": urls},
            "python": {"interpreter": sys.executable, "server_name": "localhost"},
        }

    def start_coordinator(self, host: str) -> None:
        """`glia serve` on `host`, with its decision log; waits for `/health`."""
        log = self.workdir / f"{host}-decisions.jsonl"
        config = {
            **self.base_config(self.nats_urls()),
            "listen": f"0.0.0.0:{HTTP_PORT}",
            "telemetry": {"decision_log": {"output": "file", "path": str(log)}},
            "modules": [DEMO, DOMAIN_RULES],
        }
        path = self.write_config(host, config)
        process = self.start(host, host, [str(glia_binary()), "serve", "--config", str(path)])
        wait_until(
            lambda: responds(f"{self.url(host)}/health") or not process.running(),
            60,
            f"{host} start-up",
            process.tail,
        )
        if not process.running():
            raise RuntimeError(f"{host} exited at start-up\n{process.tail()}")

    def start_worker(self, host: str) -> None:
        """`glia worker` on `host` (behind the lag proxy on `worker2`); waits for `/metrics`."""
        urls = ["nats://127.0.0.1:4222"] if host == "worker2" else self.nats_urls()
        if host == "worker2":
            to = f"{self.net.ip('nats2')}:4222"
            argv = [sys.executable, str(HERE / "lagproxy.py"), "--listen", "127.0.0.1:4222", "--to", to]
            proxy = self.start(host, "lagproxy", argv)
            wait_until(lambda: "lagproxy: " in proxy.log_path.read_text(), 10, "the lag proxy", proxy.tail)
        path = self.write_config(host, {**self.base_config(urls), "modules": [DEMO]})
        argv = [str(glia_binary()), "worker", "--config", str(path), "--metrics-listen", f"0.0.0.0:{METRICS_PORT}"]
        process = self.start(host, host, argv)
        wait_until(
            lambda: responds(f"{self.url(host, METRICS_PORT)}/metrics") or not process.running(),
            30,
            f"{host} start-up",
            process.tail,
        )

    def worker_answers(self, host: str) -> int:
        """How many invocations `host`'s worker has had `demo` answer (-1 when unreachable)."""
        try:
            status, _, body = http_request("GET", f"{self.url(host, METRICS_PORT)}/metrics", timeout=1)
        except OSError:
            return -1
        total = 0
        for line in body.decode().splitlines():
            if line.startswith("glia_invocations_total{") and 'module="demo"' in line and 'outcome="answer"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total if status == 200 else -1

    def start_python_host(self) -> None:
        """`glia-python-host serve` on the python host; waits until it serves."""
        path = self.write_config("python", {**self.base_config(self.nats_urls()), "modules": [DOMAIN_RULES]})
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "e2e" / "modules")}
        argv = [sys.executable, "-m", "glia_python_host", "serve", "--config", str(path), "--module", "domain_rules"]
        process = self.start("python", "python-host", argv, env=env)
        wait_until(
            lambda: "serving " in process.log_path.read_text(errors="replace") or not process.running(),
            60,
            "the Python host's start-up",
            process.tail,
        )
        if not process.running():
            raise RuntimeError(f"the Python host exited at start-up\n{process.tail()}")

    def start_load(self, rate: float) -> Path:
        """Starts the load on the synapse host; returns its records' file."""
        out = self.workdir / "records.jsonl"
        argv = [sys.executable, str(HERE / "loadgen.py"), "--token", GLIA_TOKEN, "--out", str(out)]
        argv += ["--rate", str(rate), "--deadline", str(BRIDGE_DEADLINE_S)]
        for host in COORDINATORS:
            argv += ["--url", self.url(host)]
        self.start("synapse", "loadgen", argv)
        return out

    def stop_load(self) -> None:
        """Stops sending; returns once every decision sent has its record (each ends by its
        deadline)."""
        for process in self.processes.pop("synapse", []):
            process.stop(timeout=BRIDGE_DEADLINE_S + 5)

    def start_everything(self) -> None:
        """Every part, in the order a deployment starts: NATS, workers and hosts, coordinators."""
        for host in NATS_HOSTS:
            self.start_nats(host)
        self.wait_cluster()
        for host in WORKERS:
            self.start_worker(host)
        self.start_python_host()
        for host in COORDINATORS:
            self.start_coordinator(host)
