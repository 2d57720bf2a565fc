"""synapse-http-antispam for the end-to-end tests and the benchmark: the real module's
`modules:` entry, and the fakes of Draupnir and Meowlnir (and a server that allows everything)
run as processes by `glia-antispam-fake`, built from `tests/src/antispam_fakes.rs`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Process, built_binary, http_request, wait_until

#: The path glia serves synapse-http-antispam on; the module appends `/{callback}`.
INGRESS_PATH = "/_glia/v1/http-antispam"


def antispam_module(base_url: str, **config: Any) -> dict[str, Any]:
    """The real synapse-http-antispam's `modules:` entry for Synapse."""
    return {"module": "synapse_http_antispam.HTTPAntispam", "config": {"base_url": base_url, **config}}


def fake_binary() -> Path:
    """`glia-antispam-fake`: `GLIA_ANTISPAM_FAKE_BIN`, else beside the glia binary, else
    target/debug; fails saying how to build it."""
    return built_binary("glia-antispam-fake", "GLIA_ANTISPAM_FAKE_BIN")


@dataclass
class Recorded:
    """One request a fake was sent."""

    path: str
    authorization: str | None
    body: str

    @property
    def callback(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class AntispamFake:
    """A running fake: `{"draupnir": {...}}`, `{"meowlnir": {...}}` or `"nothing"`."""

    process: Process
    root: str
    base_url: str

    @classmethod
    def start(cls, workdir: Path, name: str, config: Mapping[str, Any] | str) -> AntispamFake:
        """Starts the fake and waits for the line naming its address."""
        log = workdir / f"fake-{name}.log"
        process = Process(name, [str(fake_binary()), json.dumps(config)], log).start()
        ready: dict[str, str] = {}

        def started() -> bool:
            if not process.running():
                return True
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    ready.update(json.loads(line))
                    return True
            return False

        wait_until(started, 10, f"{name} start-up", process.tail)
        if not ready:
            raise RuntimeError(f"{name} exited at start-up\n{process.tail()}")
        return cls(process, ready["root"], ready["base_url"])

    def requests(self, callback: str | None = None) -> list[Recorded]:
        """What it was sent so far (for `callback` only, when given), in order."""
        status, _, body = http_request("GET", f"{self.root}/_fake/requests")
        assert status == 200, body
        sent = [Recorded(r["path"], r["authorization"], r["body"]) for r in json.loads(body)]
        return [r for r in sent if callback is None or r.callback == callback]

    def stop(self) -> None:
        self.process.stop()
