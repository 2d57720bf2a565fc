"""Running unmodified Synapse modules under glia for the end-to-end tests: glia's `python:`
section, standalone Python hosts on NATS, the bridge's ModuleApi channel, and the real peers
the PyPI modules talk to (an OpenLDAP server).

Everything runs on 127.0.0.1. The Python hosts run from this venv (`sys.executable`), which
tests/e2e/setup.sh gives glia-python-host and the modules under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import GLIA_TOKEN, Process, free_port, http_request, wait_until

HERE = Path(__file__).resolve().parent
#: Modules the tests load from git rather than PyPI (see modules/README.md).
VENDORED_MODULES = HERE / "modules"
ORACLE = HERE / "oracle"

#: The bridge's ModuleApi channel secret in the tests.
MODULE_API_SECRET = "e2e-module-api-secret"


def python_path_env(*dirs: Path) -> dict[str, str]:
    """This environment with `dirs` on `PYTHONPATH` (for a Synapse or a glia whose hosts
    import modules from there)."""
    extra = [str(d) for d in dirs]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [*extra, os.environ.get("PYTHONPATH")]))}


def python_section(server_name: str, module_api_port: int | None = None, **more: Any) -> dict[str, Any]:
    """glia's `python:` section: hosts run with this venv's Python, for `server_name`, with
    the bridge's ModuleApi channel on `module_api_port` when given."""
    section: dict[str, Any] = {"interpreter": sys.executable, "server_name": server_name, **more}
    if module_api_port is not None:
        section["module_api"] = {"url": f"http://127.0.0.1:{module_api_port}", "secret": MODULE_API_SECRET}
    return section


def nats_glia_config(port: int, nats_url: str, entry: dict[str, Any], **more: Any) -> dict[str, Any]:
    """glia's config for one Python-hosted module on NATS (`entry`), listening on `port` with the
    test token; `more` adds top-level settings (a `deadline`)."""
    return {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        **more,
        "bus": {"type": "nats", "url": nats_url},
        "python": python_section("example.com"),
        "modules": [entry],
    }


def bridge_module_api(port: int) -> dict[str, Any]:
    """The bridge's `module_api` setting: the channel on `127.0.0.1:port`."""
    return {"listen": f"127.0.0.1:{port}", "secret": MODULE_API_SECRET}


def glia_modules(glia_url: str) -> dict[str, Any]:
    """`GET /_glia/v1/modules`."""
    status, _, body = http_request(
        "GET", f"{glia_url}/_glia/v1/modules", headers={"Authorization": f"Bearer {GLIA_TOKEN}"}
    )
    assert status == 200, body
    return json.loads(body)


def module_info(glia_url: str, name: str) -> dict[str, Any]:
    """One module's entry of glia's module listing."""
    return next(m for m in glia_modules(glia_url)["modules"] if m["name"] == name)


def start_standalone_host(config_path: Path, names: Iterable[str], log: Path, env: Mapping[str, str]) -> Process:
    """`glia-python-host serve --config ... --module NAME...`, waiting until it serves."""
    argv = [sys.executable, "-m", "glia_python_host", "serve", "--config", str(config_path)]
    for name in names:
        argv += ["--module", name]
    process = Process("glia-python-host", argv, log, env=env).start()
    process.wait_logged("serving ", 60, "the standalone Python host's start-up")
    return process


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started (glia's Python hosts), whichever of its threads started
    them (each module starts its host from its own thread)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def config_checks(pid: int) -> list[int]:
    """The `glia_python_host check` processes glia `pid` started (a reload's config check)."""
    checks: list[int] = []
    for child in child_pids(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"check" in argv and b"glia_python_host" in argv:
            checks.append(child)
    return checks


# -- OpenLDAP -----------------------------------------------------------------------------------

LDAP_SUFFIX = "dc=example,dc=com"
LDAP_ADMIN = f"cn=admin,{LDAP_SUFFIX}"
LDAP_ADMIN_PASSWORD = "e2e-ldap-admin"


def slapd_binary() -> str:
    """Debian's slapd; fails saying how to get it."""
    found = shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin")
    if found is None or shutil.which("ldapadd") is None:
        raise RuntimeError(
            "slapd and ldapadd not found: install OpenLDAP with `apt-get install slapd ldap-utils` "
            "(tests/run-all does so when it runs as root)"
        )
    return found


@dataclass
class Slapd:
    """A real OpenLDAP server on loopback, with `ou=users` and the users given."""

    process: Process
    port: int

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, workdir: Path, users: Mapping[str, str]) -> Slapd:
        """Starts slapd with an MDB database for `dc=example,dc=com` and adds `users` (uid to
        password) under `ou=users`."""
        binary = slapd_binary()
        workdir.mkdir(parents=True, exist_ok=True)
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        schema = Path("/etc/ldap/schema")
        config = workdir / "slapd.conf"
        config.write_text(
            "\n".join(
                [
                    *(f"include {schema / name}" for name in ("core.schema", "cosine.schema", "inetorgperson.schema")),
                    f"pidfile {workdir / 'slapd.pid'}",
                    "moduleload back_mdb",
                    "database mdb",
                    f"suffix {LDAP_SUFFIX}",
                    f"rootdn {LDAP_ADMIN}",
                    f"rootpw {LDAP_ADMIN_PASSWORD}",
                    f"directory {data}",
                    "",
                ]
            )
        )
        port = free_port()
        process = Process(
            "slapd",
            [binary, "-d", "0", "-f", str(config), "-h", f"ldap://127.0.0.1:{port}/"],
            workdir / "slapd.log",
        ).start()
        slapd = cls(process, port)
        wait_until(lambda: _listening(port) or not process.running(), 20, "slapd start-up", process.tail)
        if not process.running():
            raise RuntimeError(f"slapd exited at start-up\n{process.tail()}")
        slapd.add(_ldif(users))
        return slapd

    def add(self, ldif: str) -> None:
        """Adds entries with ldapadd, as the directory's admin."""
        subprocess.run(
            ["ldapadd", "-x", "-H", self.uri, "-D", LDAP_ADMIN, "-w", LDAP_ADMIN_PASSWORD],
            input=ldif.encode(),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        self.process.stop()


def _ldif(users: Mapping[str, str]) -> str:
    entries = [
        f"dn: {LDAP_SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n",
        f"dn: ou=users,{LDAP_SUFFIX}\nobjectClass: organizationalUnit\nou: users\n",
    ]
    for uid, password in users.items():
        entries.append(
            f"dn: uid={uid},ou=users,{LDAP_SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid.title()}\n"
            f"sn: {uid}\nmail: {uid}@example.com\nuserPassword: {password}\n"
        )
    return "\n".join(entries)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class LdapLink:
    """A TCP relay in front of the LDAP server, which the modules are configured with. It
    relays while `up`; cut (`cut()`), it accepts connections and never answers, as an LDAP
    server that hangs does (matrix-org/matrix-synapse-ldap3#124); `restore()` closes the held
    connections and relays again."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.up = True
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, name="ldap-link", daemon=True).start()

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self._socket.getsockname()[1]}"

    def cut(self) -> None:
        """From now on, connections are accepted and left unanswered."""
        self.up = False

    def restore(self) -> None:
        """Closes the connections held while cut, and relays again."""
        self.up = True
        held, self._held = self._held, []
        for connection in held:
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            if not self.up:
                self._held.append(connection)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                connection.close()
                continue
            for source, sink in ((connection, upstream), (upstream, connection)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def stop(self) -> None:
        self._socket.close()
        self.restore()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copies `source` to `sink` until either closes."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def fresh(prefix: str) -> str:
    """A name nobody has used yet."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
