"""A host dies with its parent even while its module blocks the event loop: a real host
process (`python -m glia_python_host child`), started by a stand-in for glia that is then
SIGKILLed. No parent-death signal is set here (glia sets it; a Python parent does not), so
this is the host's own guard (`parent.py`) at work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

#: A module whose constructor says it started, then blocks the host's only thread.
BLOCKING_MODULE = """
import time
from pathlib import Path


class Blocking:
    def __init__(self, config, api):
        Path(config["marker"]).write_text("loading")
        time.sleep(3600)

    @staticmethod
    def parse_config(config):
        return config
"""

#: The stand-in for glia: starts the host, writes its start frame, says the host's pid, waits.
PARENT = """
import subprocess, sys, time
host = subprocess.Popen([sys.executable, "-m", "glia_python_host", "child"], stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL)
host.stdin.write(sys.argv[1].encode() + b"\\n")
host.stdin.flush()
print(host.pid, flush=True)
time.sleep(3600)
"""


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(condition: object, seconds: float, what: str) -> None:
    """Polls `condition` until it holds; fails naming `what` after `seconds` (a bound on a
    hang, not a measure of speed)."""
    end = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not after {seconds} s")
        time.sleep(0.1)


def test_a_host_blocked_in_its_module_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    (tmp_path / "blocking_module.py").write_text(textwrap.dedent(BLOCKING_MODULE))
    marker = tmp_path / "marker"
    start = {
        "start": {
            "name": "blocking",
            "module": "blocking_module.Blocking",
            "config": {"marker": str(marker)},
            "homeserver": {"server_name": "example.com"},
        }
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, json.dumps(start)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert parent.stdout is not None
        host = int(parent.stdout.readline())
        wait_for(marker.exists, 120, "the host loading the blocking module")
        assert alive(host)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_for(lambda: not alive(host), 30, f"the orphaned host {host} exiting")
    finally:
        parent.kill()
        parent.wait()
        if "host" in locals() and alive(host):
            os.kill(host, signal.SIGKILL)
