"""What `max_rss` does to a Python module that leaks: the scripted module keeping `--leak` KiB
per call, in glia without a bound and with `python.max_rss`, side by side in one run.

Not part of the test run. Usage (from the repository root, after tests/e2e/setup.sh):

    GLIA_BIN=target/release/glia tests/e2e/.venv/bin/python tests/e2e/bench_python_leak.py --calls 4000

The calls alternate between the two glias. Every `--every` calls the resident memory of each
glia's hosts is read from /proc. Printed per glia: the hosts' resident memory at the start, its
peak and at the end (the largest host's), the hosts that served, the recycles, and the calls
answered by the module (a lost invocation would be the failure policy's allow).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import GLIA_TOKEN, Glia, free_port, glia_binary
from hosting import ORACLE, child_pids, python_path_env, python_section
from test_python_host import ask, scripted, served_by, write_script

ROOM = {"user_id": "@alice:example.com", "room_config": {}}


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def start(stack: ExitStack, workdir: Path, leak_kib: int, limits: dict[str, Any]) -> Glia:
    workdir.mkdir()
    write_script(
        workdir, {"leaky": {"user_may_create_room": {"leak": leak_kib, "then": {"return": {"codes": "M_FORBIDDEN"}}}}}
    )
    port = free_port()
    module = {**scripted("leaky", workdir, ["user_may_create_room"]), "failure_policy": "allow", "timeout": "10s"}
    if limits:
        module["python"] = limits
    config = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "python": python_section("example.com"),
        "modules": [module],
    }
    glia = Glia.start(glia_binary(), workdir, config, port, env=python_path_env(ORACLE))
    stack.callback(glia.stop)
    return glia


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000, help="calls per glia (default 4000)")
    parser.add_argument("--leak", type=int, default=128, help="KiB kept per call (default 128)")
    parser.add_argument("--max-rss", default="256MiB", help="the bounded glia's python.max_rss (default 256MiB)")
    parser.add_argument("--every", type=int, default=50, help="calls between memory readings (default 50)")
    args = parser.parse_args()
    print(f"glia binary: {glia_binary()}")
    with tempfile.TemporaryDirectory(prefix="glia-bench-") as tmp, ExitStack() as stack:
        setups = {"no bound": {}, f"max_rss {args.max_rss}": {"max_rss": args.max_rss}}
        glias = {
            name: start(stack, Path(tmp) / f"g{i}", args.leak, limits)
            for i, (name, limits) in enumerate(setups.items())
        }
        first = {name: max(rss_mib(p) for p in child_pids(g.process.popen.pid)) for name, g in glias.items()}  # type: ignore[union-attr]
        peak = dict(first)
        answered = dict.fromkeys(glias, 0)
        for i in range(args.calls):
            for name, glia in glias.items():
                answered[name] += ask(glia, "user_may_create_room", ROOM)["decision"] == "deny"
                if i % args.every == 0:
                    pids = child_pids(glia.process.popen.pid)  # type: ignore[union-attr]
                    peak[name] = max([peak[name], *(rss_mib(p) for p in pids)])
        print(f"\n== {args.calls} calls per glia, {args.leak} KiB kept per call, alternating")
        print(f"{'glia':<18}{'start MiB':>10}{'peak MiB':>10}{'end MiB':>9}{'hosts':>7}{'answered':>10}")
        for i, (name, glia) in enumerate(glias.items()):
            pids = child_pids(glia.process.popen.pid)  # type: ignore[union-attr]
            end = max(rss_mib(p) for p in pids)
            hosts = len(set(served_by(Path(tmp) / f"g{i}")))
            print(
                f"{name:<18}{first[name]:>10.0f}{max(peak[name], end):>10.0f}{end:>9.0f}{hosts:>7}{answered[name]:>10}"
            )


if __name__ == "__main__":
    main()
