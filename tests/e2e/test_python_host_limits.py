"""glia's Python hosts kept in bounds, with glia alone (no homeserver): a host past
`max_requests` or `max_rss` is replaced by a fresh one without losing an invocation; several
host processes per module (`processes:`) keep one blocking call from stalling the module; and
hosts die with glia, even blocked in a call.

The module is the scripted oracle (`oracle/scripted_synapse.py`): its script makes it leak,
block or answer, and each call it records names the host process that served it. The module
answers `M_FORBIDDEN` (a deny) and its failure policy is `allow`, so an invocation that was
lost or cut off shows as an allow.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import GLIA_TOKEN, Glia, free_port, http_request, wait_until
from hosting import ORACLE, alive, child_pids, module_info, python_path_env, python_section
from test_python_host import DEADLINE_S, ask, scripted, served_by, write_script

sys.path.insert(0, str(ORACLE))

DENY = {"return": {"codes": "M_FORBIDDEN"}}
ROOM = {"user_id": "@alice:example.com", "room_config": {}}


@contextmanager
def glia_with(glia_bin: Path, workdir: Path, script: dict[str, Any], **entry: Any) -> Iterator[Glia]:
    """glia serving one scripted module, `lim`, whose entry has `entry`'s keys."""
    write_script(workdir, {"lim": {"user_may_create_room": script}})
    port = free_port()
    module = scripted("lim", workdir, ["user_may_create_room"])
    module.update(failure_policy="allow", timeout="3s", **entry)
    config = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "deadline": f"{DEADLINE_S}s",
        "python": python_section("example.com"),
        "modules": [module],
    }
    glia = Glia.start(glia_bin, workdir, config, port, env=python_path_env(ORACLE))
    try:
        yield glia
    finally:
        glia.stop()


def decide(glia: Glia, user: str = "@alice:example.com") -> str:
    return str(ask(glia, "user_may_create_room", {**ROOM, "user_id": user})["decision"])


def recycles(glia: Glia, reason: str) -> float:
    """`glia_python_host_recycles_total{module="lim",reason=...}`, 0 when not yet counted."""
    status, _, body = http_request("GET", f"{glia.url}/metrics", headers={"Authorization": f"Bearer {GLIA_TOKEN}"})
    assert status == 200, body
    found = re.search(
        rf'^glia_python_host_recycles_total{{module="lim",reason="{reason}"}} (\S+)$', body.decode(), re.M
    )
    return float(found.group(1)) if found else 0.0


def glia_pid(glia: Glia) -> int:
    assert glia.process.popen is not None
    return glia.process.popen.pid


def test_a_host_past_max_requests_is_replaced_without_losing_an_invocation(glia_bin: Path, tmp_path: Path) -> None:
    with glia_with(glia_bin, tmp_path, DENY, python={"max_requests": 25, "max_requests_jitter": 5}) as glia:
        # Rounds of eight callers at once, so that invocations are in flight on the old host
        # when it is replaced, until four hosts have served: every call is the module's answer.
        with ThreadPoolExecutor(8) as callers:
            for _ in range(200):
                decisions = list(callers.map(lambda _: decide(glia), range(40)))
                assert decisions == ["deny"] * 40, glia.process.tail()
                if len(set(served_by(tmp_path))) >= 4:
                    break
        assert len(set(served_by(tmp_path))) >= 4
        assert recycles(glia, "max_requests") >= 3
        info = module_info(glia.url, "lim")
        assert (info["crashes"], info["restarts"]) == (0, 0), info
        # The replaced hosts were stopped once drained.
        wait_until(
            lambda: len(child_pids(glia_pid(glia))) == 1,
            30,
            "the replaced hosts stopping",
            lambda: f"{child_pids(glia_pid(glia))}\n{glia.process.tail()}",
        )
        assert "recycling the Python host" in glia.process.log_path.read_text()


def test_a_host_past_max_rss_is_replaced(glia_bin: Path, tmp_path: Path) -> None:
    # 16 MiB kept per call: a host (about 100 MiB with Synapse imported) passes 256 MiB
    # within a dozen calls.
    leak = {"leak": 16 * 1024, "then": DENY}
    with glia_with(glia_bin, tmp_path, leak, python={"max_rss": "256MiB"}) as glia:
        for _ in range(12):
            assert decide(glia) == "deny", glia.process.tail()
        # The old host serves on while its replacement loads; then the new one serves.
        wait_until(lambda: recycles(glia, "max_rss") >= 1, 60, "a recycle for max_rss", glia.process.tail)
        first = served_by(tmp_path)[0]
        for _ in range(3):
            assert decide(glia) == "deny", glia.process.tail()
        assert first not in served_by(tmp_path)[-3:]
        assert recycles(glia, "max_requests") == 0
        wait_until(lambda: not alive(first), 30, "the leaking host stopping", glia.process.tail)


def test_with_several_processes_one_blocking_call_stalls_only_its_host(glia_bin: Path, tmp_path: Path) -> None:
    script = {"if": {"arg": "user_id", "contains": "blocker"}, "then": {"block": 10, "then": DENY}, "else": DENY}
    with glia_with(glia_bin, tmp_path, script, python={"processes": 3}) as glia:
        assert len(child_pids(glia_pid(glia))) == 3
        blocked = threading.Thread(target=decide, args=(glia, "@blocker:example.com"))
        blocked.start()
        wait_until(lambda: any("blocker" in json.dumps(c) for c in _calls(tmp_path)), 30, "the blocking call to start")
        # While one host is blocked, the others answer every call (not the failure policy).
        for _ in range(30):
            assert decide(glia) == "deny", glia.process.tail()
        blocker_pid = next(c["pid"] for c in _calls(tmp_path) if "blocker" in json.dumps(c))
        assert blocker_pid not in served_by(tmp_path)[-30:]
        blocked.join()


def test_hosts_die_with_a_killed_glia_even_blocked_in_a_call(glia_bin: Path, tmp_path: Path) -> None:
    script = {"block": 3600, "then": DENY}
    with glia_with(glia_bin, tmp_path, script, python={"processes": 2}) as glia:
        hosts = child_pids(glia_pid(glia))
        assert len(hosts) == 2
        # Its caller gets no answer: glia is killed while it waits.
        threading.Thread(target=_ask_unanswered, args=(glia,), daemon=True).start()
        wait_until(lambda: bool(_calls(tmp_path)), 30, "the blocking call to start")
        os.kill(glia_pid(glia), signal.SIGKILL)
        assert glia.process.popen is not None
        glia.process.popen.wait()
        end = time.monotonic() + 30
        while any(alive(pid) for pid in hosts):
            assert time.monotonic() < end, f"hosts still running 30 s after glia was killed: {hosts}"
            time.sleep(0.1)


def _calls(workdir: Path) -> list[dict[str, Any]]:
    from scripted_common import read_calls

    return list(read_calls(workdir / "calls.jsonl"))


def _ask_unanswered(glia: Glia) -> None:
    with contextlib.suppress(OSError):
        decide(glia)
