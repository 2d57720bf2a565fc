"""Hosts as network namespaces on one Linux bridge, and the faults done to them.

Each host is a namespace `gfm-<name>` with one interface, `eth0`, a veth whose other end is a
port of the bridge `br0` in the namespace `gfm-switch`. The root namespace gets a port too
(`gfm-ctl`, the first address of the subnet), so this harness reaches every host directly for
control (start-up checks, metrics) without being one of them: faults name their peers, never
the whole subnet, so the harness keeps seeing a partitioned host. The bridge lives in its own
namespace rather than the root one because bridged traffic there would cross the root
namespace's firewall (container runtimes set `FORWARD` to drop).

A partition is a pair of nftables rules in the host's own namespace dropping everything to and
from the peers' addresses (drop, not reject: a partition times out, it does not refuse); a
host is killed by SIGKILLing every process in its namespace (`ip netns pids`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable, Sequence

PREFIX = "gfm-"
SWITCH = f"{PREFIX}switch"
CONTROL_LINK = f"{PREFIX}ctl"
SUBNET = "10.213.77"
CONTROL_IP = f"{SUBNET}.1"
FAULT_TABLE = "gfm_fault"


def run(argv: Sequence[str], stdin: str | None = None) -> str:
    """Runs a command; fails with its output when it fails."""
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def namespace(host: str) -> str:
    """The namespace of `host`."""
    return f"{PREFIX}{host}"


def in_host(host: str, argv: Sequence[str]) -> list[str]:
    """`argv` run inside `host`'s namespace (`ip netns exec` execs it: the child is the
    process itself)."""
    return ["ip", "netns", "exec", namespace(host), *argv]


class Network:
    """The hosts, by name, with their addresses."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.ips = {host: f"{SUBNET}.{10 + i}" for i, host in enumerate(hosts)}

    def ip(self, host: str) -> str:
        """`host`'s address."""
        return self.ips[host]

    def create(self) -> None:
        """Makes the switch, the hosts and their links (after removing any a failed run
        left behind)."""
        remove_leftovers()
        run(["ip", "netns", "add", SWITCH])
        run(["ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", SWITCH, "link", "set", "br0", "up"])
        run(["ip", "link", "add", CONTROL_LINK, "type", "veth", "peer", "name", "ctl", "netns", SWITCH])
        run(["ip", "addr", "add", f"{CONTROL_IP}/24", "dev", CONTROL_LINK])
        run(["ip", "link", "set", CONTROL_LINK, "up"])
        self._plug("ctl")
        for host, ip in self.ips.items():
            ns = namespace(host)
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            port = f"p-{host}"[:15]
            run(["ip", "-n", SWITCH, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
            self._plug(port)
            run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    @staticmethod
    def _plug(port: str) -> None:
        run(["ip", "-n", SWITCH, "link", "set", port, "master", "br0"])
        run(["ip", "-n", SWITCH, "link", "set", port, "up"])

    def partition(self, host: str, peers: Iterable[str]) -> None:
        """Drops every packet between `host` and `peers`, in `host`'s namespace."""
        addresses = ", ".join(self.ip(p) for p in peers)
        rules = f"""table inet {FAULT_TABLE} {{
    chain input {{ type filter hook input priority 0; ip saddr {{ {addresses} }} drop; }}
    chain output {{ type filter hook output priority 0; ip daddr {{ {addresses} }} drop; }}
}}
"""
        run(in_host(host, ["nft", "-f", "-"]), stdin=rules)

    def heal(self, host: str) -> None:
        """Removes `host`'s partition."""
        run(in_host(host, ["nft", "delete", "table", "inet", FAULT_TABLE]))

    def kill(self, host: str) -> list[int]:
        """SIGKILLs every process in `host`'s namespace; returns their ids."""
        pids = [int(p) for p in run(["ip", "netns", "pids", namespace(host)]).split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def destroy(self) -> None:
        """Kills whatever still runs in the hosts and removes every namespace and link."""
        for host in self.ips:
            with contextlib.suppress(RuntimeError):
                self.kill(host)
        remove_leftovers()


def remove_leftovers() -> None:
    """Removes this harness's namespaces and control link, from this run or an earlier one
    (only names with its prefix: other namespaces on the machine are not its business)."""
    for line in run(["ip", "netns", "list"]).splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX):
            for pid in run(["ip", "netns", "pids", name]).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            run(["ip", "netns", "delete", name])
    # Deleting the switch's namespace deletes the control link's peer, and with it the link.
    subprocess.run(["ip", "link", "delete", CONTROL_LINK], capture_output=True, check=False)
