"""glia's Python host itself, with glia alone (no homeserver but in one test): `glia check-config` running the
modules' `parse_config`; supervision of the host processes `glia serve` starts (a module that
raises, one that hangs, a host killed while it runs and while it loads); and standalone hosts
sharing a module's load over NATS (and serving its web resource).

The module is the scripted oracle (`oracle/scripted_synapse.py`): its script makes it raise or
hang, and each call it records names the host process that served it. One test adds a
homeserver: a module on NATS has its web resource served through Synapse and the bridge.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import (
    GLIA_TOKEN,
    Glia,
    NatsServer,
    Process,
    Synapse,
    bridge_module,
    free_port,
    http_request,
    wait_until,
)
from hosting import (
    ORACLE,
    alive,
    child_pids,
    config_checks,
    glia_modules,
    module_info,
    nats_glia_config,
    python_path_env,
    python_section,
    start_standalone_host,
)

sys.path.insert(0, str(ORACLE))

from scripted_common import read_calls

#: How long glia lets a whole request take (its `deadline`); every request must be answered
#: by then, whatever the host does.
DEADLINE_S = 5
ROOM_CONFIG = {"user_id": "@alice:example.com", "room_config": {}}
INVITE = {"inviter": "@a:x", "invitee": "@b:x", "room_id": "!r:x"}


def scripted(name: str, workdir: Path, callbacks: list[str], **config: Any) -> dict[str, Any]:
    """A `modules:` entry running the scripted module, with its script and calls in `workdir`."""
    return {
        "module": "scripted_synapse.ScriptedModule",
        "name": name,
        "config": {
            "name": name,
            "script": str(workdir / "script.json"),
            "calls": str(workdir / "calls.jsonl"),
            "callbacks": callbacks,
            **config,
        },
    }


def ask(glia: Glia, callback: str, body: dict[str, Any], timeout_s: float = DEADLINE_S + 5) -> dict[str, Any]:
    """Asks glia to decide one callback; the answer must come by the request's deadline."""
    status, _, raw = http_request(
        "POST",
        f"{glia.url}/_glia/v1/callbacks/{callback}",
        body,
        {"Authorization": f"Bearer {GLIA_TOKEN}"},
        timeout=timeout_s,
    )
    assert status == 200, raw
    return json.loads(raw)  # type: ignore[no-any-return]


def serves(glia: Glia, workdir: Path) -> bool:
    """Whether the module's host answers a call itself (rather than its failure policy)."""
    before = len(served_by(workdir))
    ask(glia, "user_may_invite", INVITE)
    return len(served_by(workdir)) > before


def write_script(workdir: Path, script: dict[str, Any]) -> None:
    (workdir / "script.json").write_text(json.dumps(script))


def served_by(workdir: Path) -> list[int]:
    """The host process that served each call so far."""
    return [call["pid"] for call in read_calls(workdir / "calls.jsonl")]


# -- glia check-config ----------------------------------------------------------------------------


def check_config(glia_bin: Path, path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(glia_bin), "check-config", str(path)],
        capture_output=True,
        text=True,
        env=env or python_path_env(ORACLE),
        timeout=180,
    )


def test_check_config_runs_each_modules_parse_config_and_names_the_key(glia_bin: Path, tmp_path: Path) -> None:
    config = tmp_path / "glia.yaml"
    head = f"python:\n  interpreter: {sys.executable}\n  server_name: example.com\nmodules:\n"
    config.write_text(
        head
        + "  - module: ldap_auth_provider.LdapAuthProviderModule\n"
        + "    name: ldap\n"
        + "    config:\n"
        + "      enabled: true\n"
        + "      uri: ldap://127.0.0.1:1\n"
    )
    done = check_config(glia_bin, config)
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"error: {config}:7:5: modules[0] (ldap): key `config`: bad config for module "
        '"ldap_auth_provider.LdapAuthProviderModule": Failed to parse config for module '
        "'ldap_auth_provider.LdapAuthProviderModule': LDAP enabled but missing required config values: base, attributes"
    ), done.stderr
    config.write_text(head + "  - module: no_such_package.NoSuchModule\n")
    done = check_config(glia_bin, config)
    assert done.stderr.strip() == (
        f"error: {config}:5:5: modules[0] (no_such_package.NoSuchModule): key `module`: cannot load "
        "no_such_package.NoSuchModule: ModuleNotFoundError: No module named 'no_such_package'"
    )
    config.write_text(
        head + "  - module: shared_secret_authenticator.SharedSecretAuthProvider\n    config: {shared_secret: s}\n"
    )
    done = check_config(glia_bin, config)
    assert (done.returncode, done.stdout.strip()) == (0, f"{config}: OK (1 modules)"), done.stderr


def test_check_config_says_what_a_python_module_needs(glia_bin: Path, tmp_path: Path) -> None:
    config = tmp_path / "glia.yaml"
    config.write_text("modules:\n  - module: shared_secret_authenticator.SharedSecretAuthProvider\n")
    done = check_config(glia_bin, config)
    assert "key `module`: a Python module (a dotted path to its class) needs glia's `python:` section" in done.stderr
    config.write_text(
        "python: {interpreter: /nonexistent/python, server_name: example.com}\n"
        "modules:\n  - module: shared_secret_authenticator.SharedSecretAuthProvider\n"
    )
    done = check_config(glia_bin, config)
    assert f'{config}:1:10: key `python.interpreter`: cannot run "/nonexistent/python"' in done.stderr, done.stderr
    assert "glia-python-host" in done.stderr


# -- supervision ------------------------------------------------------------------------------


@dataclass
class Supervised:
    """glia with one hosted module, `sup`, on a short timeout and watchdog."""

    glia: Glia
    workdir: Path

    def info(self) -> dict[str, Any]:
        return module_info(self.glia.url, "sup")

    def host_pid(self) -> int:
        """The host that served the latest call."""
        before = len(served_by(self.workdir))
        ask(self.glia, "user_may_invite", {"inviter": "@a:x", "invitee": "@b:x", "room_id": "!r:x"})
        pids = served_by(self.workdir)
        assert len(pids) > before, self.glia.process.tail()
        return pids[-1]

    def running_again(self, restarts: int) -> None:
        """Waits until the module has restarted `restarts` times in all and its new host serves
        (until the host has loaded the module, calls are answered by the failure policy)."""
        wait_until(
            lambda: self.info()["restarts"] >= restarts and self.info()["state"] == "running",
            60,
            f"{restarts} restarts of the hosted module",
            lambda: f"{self.info()}\n{self.glia.process.tail()}",
        )
        wait_until(lambda: serves(self.glia, self.workdir), 60, "the new host serving", self.glia.process.tail)


@pytest.fixture(scope="module")
def supervised(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervised]:
    workdir = tmp_path_factory.mktemp("supervised")
    write_script(workdir, {})
    port = free_port()
    entry = scripted("sup", workdir, ["user_may_create_room", "user_may_invite"], load_delay=1)
    entry.update(
        timeout="1s",
        failure_policy="allow",
        restart={"watchdog": "3s", "backoff_min": "10ms", "intensity": 50, "period": "1m"},
    )
    config = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "deadline": f"{DEADLINE_S}s",
        "python": python_section("example.com"),
        "modules": [entry],
    }
    glia = Glia.start(glia_bin, workdir, config, port, env=python_path_env(ORACLE))
    yield Supervised(glia, workdir)
    glia.stop()


def test_a_module_that_raises_is_answered_by_its_failure_policy_and_not_restarted(supervised: Supervised) -> None:
    write_script(supervised.workdir, {"sup": {"user_may_create_room": {"raise": {"exception": "broken"}}}})
    try:
        assert ask(supervised.glia, "user_may_create_room", ROOM_CONFIG)["decision"] == "allow"  # policy: allow
    finally:
        write_script(supervised.workdir, {})
    # An exception is the module's answer, not a crash of its host.
    assert (supervised.info()["crashes"], supervised.info()["restarts"]) == (0, 0)


def test_a_hanging_module_is_cut_off_by_its_timeout_and_its_host_restarted_by_the_watchdog(
    supervised: Supervised,
) -> None:
    before = supervised.host_pid()
    restarts = supervised.info()["restarts"]
    write_script(supervised.workdir, {"sup": {"user_may_create_room": {"sleep": 3600}}})
    try:
        assert ask(supervised.glia, "user_may_create_room", ROOM_CONFIG)["decision"] == "allow"
    finally:
        write_script(supervised.workdir, {})
    supervised.running_again(restarts + 1)
    assert supervised.host_pid() != before


def test_a_killed_host_fails_its_invocations_through_the_policy_and_is_restarted(supervised: Supervised) -> None:
    before = supervised.host_pid()
    restarts = supervised.info()["restarts"]
    os.kill(before, signal.SIGKILL)
    # Whatever state the host is in, every request is answered by its deadline.
    for _ in range(5):
        assert ask(supervised.glia, "user_may_create_room", ROOM_CONFIG)["decision"] == "allow"
    supervised.running_again(restarts + 1)
    assert supervised.host_pid() != before
    assert supervised.info()["crashes"] >= 1


def test_a_host_killed_while_it_loads_the_module_is_started_again(supervised: Supervised) -> None:
    before = supervised.host_pid()
    restarts = supervised.info()["restarts"]
    glia_pid = supervised.glia.process.popen.pid  # type: ignore[union-attr]
    os.kill(before, signal.SIGKILL)
    assert ask(supervised.glia, "user_may_create_room", ROOM_CONFIG)["decision"] == "allow"
    # The next host is loading (the module's constructor takes a second): kill it then.
    loading: list[int] = []

    def a_new_host_is_loading() -> bool:
        loading[:] = [pid for pid in child_pids(glia_pid) if pid != before]
        return bool(loading)

    wait_until(a_new_host_is_loading, 30, "a new host process", supervised.glia.process.tail)
    os.kill(loading[0], signal.SIGKILL)
    for _ in range(3):
        assert ask(supervised.glia, "user_may_create_room", ROOM_CONFIG)["decision"] == "allow"
    supervised.running_again(restarts + 1)
    assert supervised.host_pid() not in (before, loading[0])


def test_calls_fail_at_once_through_the_policy_while_a_module_that_killed_its_host_restarts(
    glia_bin: Path, tmp_path: Path
) -> None:
    """A module that ends its own host: the calls it had in flight, and those arriving while its
    new host loads, are answered by its failure policy at once (`crashed`, `unavailable` in the
    decision log), not left to wait for their timeout (60 s here) or the load."""
    gate = tmp_path / "hold"  # while it exists, a host loading the module waits in its constructor
    write_script(tmp_path, {"dies": {"user_may_create_room": {"sleep": 3600}, "user_may_invite": {"exit": 3}}})
    entry = scripted("dies", tmp_path, ["user_may_create_room", "user_may_invite"], load_gate=str(gate))
    entry.update(timeout="60s", failure_policy="allow", restart={"backoff_min": "10ms", "watchdog": "10m"})
    port = free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "deadline": "90s",
        "python": python_section("example.com"),
        "telemetry": {
            "decision_log": {"output": "file", "path": str(tmp_path / "decisions.jsonl"), "include_content": True}
        },
        "modules": [entry],
    }
    glia = Glia.start(glia_bin, tmp_path, config, port, env=python_path_env(ORACLE))
    long_ask = functools.partial(ask, timeout_s=120)
    try:
        with ThreadPoolExecutor(8) as pool:
            in_flight = [pool.submit(long_ask, glia, "user_may_create_room", ROOM_CONFIG) for _ in range(4)]
            wait_until(lambda: len(served_by(tmp_path)) >= 4, 30, "4 calls in the host", glia.process.tail)
            gate.touch()
            # The module ends its host: this call and the four in flight fail as crashes.
            assert long_ask(glia, "user_may_invite", INVITE)["decision"] == "allow"
            assert [f.result()["decision"] for f in in_flight] == ["allow"] * 4
            # The new host is held loading: calls now are answered by the policy at once.
            later = [pool.submit(long_ask, glia, "user_may_create_room", ROOM_CONFIG) for _ in range(4)]
            assert [f.result()["decision"] for f in later] == ["allow"] * 4
        wait_until(lambda: len(decisions(tmp_path)) >= 9, 30, "9 decision records", glia.process.tail)
        outcomes = [
            (r["callback"], r["modules"][0]["outcome"], r["modules"][0].get("error", "")) for r in decisions(tmp_path)
        ]
        failed_at_death = sorted(o[:2] for o in outcomes[:5])
        assert failed_at_death == [("user_may_create_room", "crashed")] * 4 + [("user_may_invite", "crashed")], outcomes
        assert [o[:2] for o in outcomes[5:]] == [("user_may_create_room", "unavailable")] * 4, outcomes
        assert all("is restarting" in error for _, _, error in outcomes[5:]), outcomes
        # Let the new host load: the module serves again.
        write_script(tmp_path, {})
        gate.unlink()
        wait_until(lambda: serves(glia, tmp_path), 60, "the new host serving", glia.process.tail)
    finally:
        glia.stop()


def decisions(workdir: Path) -> list[dict[str, Any]]:
    """glia's decision records so far, in the order they were written."""
    path = workdir / "decisions.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in records if r.get("kind", "decision") == "decision"]


# -- reloading the config -------------------------------------------------------------------------


def test_a_reload_replaces_a_changed_python_modules_host_and_keeps_an_unchanged_one(
    glia_bin: Path, tmp_path: Path
) -> None:
    keep, change = tmp_path / "keep", tmp_path / "change"
    for workdir in (keep, change):
        workdir.mkdir()
        write_script(workdir, {})
    port = free_port()
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "deadline": f"{DEADLINE_S}s",
        "python": python_section("example.com"),
        "modules": [
            scripted("keep", keep, ["user_may_invite"]),
            scripted("change", change, ["user_may_create_room"]),
        ],
    }
    glia = Glia.start(glia_bin, tmp_path, config, port, env=python_path_env(ORACLE))
    invite = {"inviter": "@a:x", "invitee": "@b:x", "room_id": "!r:x"}
    try:
        assert ask(glia, "user_may_invite", invite)["decision"] == "allow"
        assert ask(glia, "user_may_create_room", ROOM_CONFIG)["decision"] == "allow"
        (kept_host,), (old_host,) = served_by(keep), served_by(change)

        # Only `change`'s entry changes: its host is replaced, `keep`'s is untouched.
        config["modules"][1]["config"]["load_delay"] = 0
        glia.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        status, _, raw = http_request(
            "POST", f"{glia.url}/_glia/v1/admin/reload", b"", {"Authorization": f"Bearer {GLIA_TOKEN}"}, timeout=120
        )
        assert status == 200, raw
        report = json.loads(raw)
        assert (report["kept"], report["replaced"]) == (["keep"], ["change"]), report

        assert ask(glia, "user_may_invite", invite)["decision"] == "allow"
        assert ask(glia, "user_may_create_room", ROOM_CONFIG)["decision"] == "allow"
        assert served_by(keep) == [kept_host, kept_host]
        new_host = served_by(change)[-1]
        assert new_host != old_host
        glia_pid = glia.process.popen.pid  # type: ignore[union-attr]
        hosts = child_pids(glia_pid)
        assert kept_host in hosts and new_host in hosts and old_host not in hosts, (hosts, glia.process.tail())
    finally:
        glia.stop()


@pytest.mark.parametrize("way", ["sighup", "api"])
def test_sigterm_during_a_slow_config_check_stops_glia_cleanly(glia_bin: Path, tmp_path: Path, way: str) -> None:
    """A reload whose config check never ends (a module's `parse_config` blocking) does not
    hold up a shutdown: glia abandons the check and exits 0, whether the reload came by SIGHUP
    or by the admin API (whose request is then refused 503, not left open)."""
    write_script(tmp_path, {})
    port = free_port()
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "python": python_section("example.com"),
        "modules": [scripted("slow", tmp_path, ["user_may_invite"])],
    }
    glia = Glia.start(glia_bin, tmp_path, config, port, env=python_path_env(ORACLE))
    answered: list[int] = []
    headers = {"Authorization": f"Bearer {GLIA_TOKEN}"}
    url = f"{glia.url}/_glia/v1/admin/reload"
    asking = threading.Thread(target=lambda: answered.append(http_request("POST", url, b"", headers, timeout=120)[0]))
    try:
        config["modules"][0]["config"]["check_delay"] = 3600
        glia.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        if way == "sighup":
            glia.process.signal(signal.SIGHUP)
        else:
            asking.start()
        log = tmp_path / "glia.log"
        wait_until(lambda: "checking the new config" in log.read_text(errors="replace"), 30, "the reload")
        popen = glia.process.popen
        assert popen is not None
        wait_until(lambda: bool(config_checks(popen.pid)), 30, "the config check's process")
        checks = config_checks(popen.pid)
        popen.send_signal(signal.SIGTERM)
        # Far longer than a clean stop takes, far shorter than the check.
        assert popen.wait(60) == 0, glia.process.tail()
        # The abandoned check ends with glia rather than blocking on for its hour.
        wait_until(lambda: not any(alive(pid) for pid in checks), 30, f"the end of the check processes {checks}")
        if way == "api":
            asking.join(60)
            assert answered == [503], answered
    finally:
        glia.stop()


# -- standalone hosts on NATS ------------------------------------------------------------------------


def test_standalone_hosts_share_a_modules_load_over_nats_and_drain(glia_bin: Path, tmp_path: Path) -> None:
    (tmp_path / "nats").mkdir()
    nats = NatsServer.start(tmp_path / "nats")
    write_script(tmp_path, {})
    port = free_port()
    entry = scripted("shared", tmp_path, ["user_may_invite"])
    entry.update(placement="nats", failure_policy="deny", timeout="2s")
    config = nats_glia_config(port, nats.url, entry, deadline=f"{DEADLINE_S}s")
    config_path = tmp_path / "glia.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = python_path_env(ORACLE)
    hosts = [start_standalone_host(config_path, ["shared"], tmp_path / f"host-{i}.log", env) for i in range(2)]
    glia = Glia.start(glia_bin, tmp_path, config, port, env=env)
    invite = {"inviter": "@a:example.com", "invitee": "@b:example.com", "room_id": "!r:example.com"}
    try:
        wait_until(lambda: module_info(glia.url, "shared")["state"] == "running", 20, "glia planning the module")
        for _ in range(40):
            assert ask(glia, "user_may_invite", invite)["decision"] == "allow"
        assert len(set(served_by(tmp_path))) == 2, "both hosts served invocations"
        # One host drains on SIGTERM; the other serves everything.
        hosts[0].signal(signal.SIGTERM)
        assert hosts[0].popen is not None and hosts[0].popen.wait(30) == 0, hosts[0].tail()
        assert "drained; bye" in hosts[0].log_path.read_text()
        survivor = hosts[1].popen.pid  # type: ignore[union-attr]
        before = len(served_by(tmp_path))
        for _ in range(10):
            assert ask(glia, "user_may_invite", invite)["decision"] == "allow"
        assert set(served_by(tmp_path)[before:]) == {survivor}
        # With no host left, the failure policy answers at once (no responders).
        hosts[1].stop()
        assert ask(glia, "user_may_invite", invite)["decision"] == "deny"
    finally:
        glia.stop()
        for host in hosts:
            host.stop()
        nats.stop()


#: The demo resource's path as the module on NATS registers it, and as the same module loaded
#: by Synapse itself registers it (outside the bridge's `/_synapse/client`).
NATS_PAGE = "/_synapse/client/demo/hello"
NATIVE_PAGE = "/_native/demo/hello"


@pytest.mark.parametrize("hosted_by", ["standalone host", "glia worker"])
def test_a_module_on_nats_that_registers_a_web_resource_is_served_through_synapse(
    glia_bin: Path, tmp_path: Path, hosted_by: str
) -> None:
    """A module on NATS (in a standalone host, or in a host `glia worker` runs) that registers a
    web resource: glia serves its page, and the bridge has Synapse serve it on Synapse's own
    port, exactly as Synapse serves the same module's page when it loads the module itself."""
    (tmp_path / "nats").mkdir()
    nats = NatsServer.start(tmp_path / "nats")
    write_script(tmp_path, {})
    port = free_port()
    entry = scripted("webbed", tmp_path, ["user_may_invite"], web_resources=[NATS_PAGE])
    entry.update(placement="nats", required=False)
    config = nats_glia_config(port, nats.url, entry)
    config_path = tmp_path / "glia.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = python_path_env(ORACLE)
    if hosted_by == "standalone host":
        host = start_standalone_host(config_path, ["webbed"], tmp_path / "host.log", env)
    else:
        argv = [str(glia_bin), "worker", "--config", str(config_path)]
        host = Process("glia-worker", argv, tmp_path / "worker.log", env=env).start()
    glia = Glia.start(glia_bin, tmp_path, config, port, env=env)
    native = scripted("native", tmp_path, [], web_resources=[NATIVE_PAGE])
    native.pop("name")
    synapse: Synapse | None = None
    try:
        wait_until(
            lambda: module_info(glia.url, "webbed")["web_resources"] == [NATS_PAGE],
            60,
            "glia serving the module's page",
            lambda: glia.process.tail() + "\n" + host.tail(),
        )
        assert "user_may_invite" in glia_modules(glia.url)["plans"]
        synapse = Synapse.start(tmp_path / "synapse", [bridge_module(glia.url), native], env=env)
        for query in ("?name=x", "?name=%C3%A9t%C3%A9", ""):
            status, headers, body = http_request("GET", synapse.url + NATS_PAGE + query)
            through_glia = (status, headers.get("content-type"), body)
            status, headers, body = http_request("GET", synapse.url + NATIVE_PAGE + query)
            assert through_glia == (status, headers.get("content-type"), body), query
        status, _, body = http_request("GET", synapse.url + NATS_PAGE + "?name=x")
        assert (status, json.loads(body)) == (200, {"hello": "x"})
    finally:
        if synapse is not None:
            synapse.stop()
        glia.stop()
        host.stop()
        nats.stop()
