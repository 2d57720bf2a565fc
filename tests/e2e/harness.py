"""Processes and a Matrix client for the end-to-end tests (and the send benchmark).

Everything runs on 127.0.0.1 on free ports: glia (the binary from `GLIA_BIN`), a censor
service for `event_censorer`, a real Synapse (SQLite, one client listener) that loads the
glia bridge from `modules:`, and nats-server for the NATS bus. The client speaks the
client-server API with the standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVER_NAME = "localhost"
GLIA_TOKEN = "e2e-glia-token"
BRIDGE_TIMEOUT_S = 2


def mxid(localpart: str) -> str:
    """A user id on the test server."""
    return f"@{localpart}:{SERVER_NAME}"


# -- small utilities ------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str, describe: Callable[[], str] = str) -> None:
    """Polls `check` until it is true; fails after `timeout` seconds with `describe()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not happen within {timeout:g} s\n{describe()}")


def http_request(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; returns status, headers (lower-cased names) and body."""
    rest = url.split("://", 1)[1]
    host, _, path = rest.partition("/")
    conn = http.client.HTTPConnection(host, timeout=timeout)
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    try:
        conn.request(method, "/" + path, body=data, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def json_or_raw(raw: bytes) -> Any:
    """A response body: its JSON when it is JSON, else the bytes (None when empty)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw


def responds(url: str) -> bool:
    """Whether `url` answers 200."""
    try:
        return http_request("GET", url, timeout=2)[0] == 200
    except OSError:
        return False


# -- processes --------------------------------------------------------------------------


@dataclass
class Process:
    """A child process whose output goes to a log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    #: The user it runs as (None: this process's; a server that refuses root needs one).
    user: str | None = None
    popen: subprocess.Popen | None = None

    def start(self) -> Process:
        """Starts it (output appended to the log)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(self.env or os.environ),
            cwd=self.cwd,
            user=self.user,
        )
        self._log = log
        return self

    def running(self) -> bool:
        """Whether it is still alive."""
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Sends `sig` to it."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10) -> None:
        """Terminates it (SIGTERM, then SIGKILL) and waits."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._log.close()
        self.popen = None

    def wait_healthy(self, url: str, timeout: float, describe: Callable[[], str] | None = None) -> None:
        """Waits until `url` (its `/health`) answers 200; fails with `describe()` (default: the
        end of its log) when it exits first or takes over `timeout` seconds."""
        describe = describe or self.tail
        wait_until(lambda: responds(url) or not self.running(), timeout, f"{self.name} start-up", describe)
        if not self.running():
            raise RuntimeError(f"{self.name} exited at start-up\n{describe()}")

    def wait_logged(self, marker: str, timeout: float, what: str) -> None:
        """Waits until its log says `marker`; fails with the end of its log when it exits first
        or takes over `timeout` seconds."""
        wait_until(
            lambda: marker in self.log_path.read_text(errors="replace") or not self.running(),
            timeout,
            what,
            self.tail,
        )
        if not self.running():
            raise RuntimeError(f"{self.name} exited at start-up\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        """The end of its log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"({self.log_path} unreadable)"
        return f"--- last lines of {self.name}'s log ({self.log_path}) ---\n" + "\n".join(text[-lines:])


def glia_binary() -> Path:
    """The glia binary: `GLIA_BIN`, default target/debug/glia; fails if it is missing."""
    path = Path(os.environ.get("GLIA_BIN", ROOT / "target" / "debug" / "glia"))
    if not path.is_absolute():
        path = ROOT / path
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"glia binary not found at {path}: build it with `cargo build -p glia-runtime --bin glia` "
            "(or set GLIA_BIN to a built glia)"
        )
    return path


def built_binary(name: str, variable: str) -> Path:
    """A binary of this workspace other than glia (a fake, a receiver): `$variable`, else beside
    the glia binary, else target/debug; fails saying how to build it."""
    candidates = [Path(p) for p in [os.environ.get(variable)] if p]
    candidates += [glia_binary().parent / name, ROOT / "target" / "debug" / name]
    for path in candidates:
        path = path if path.is_absolute() else ROOT / path
        if os.access(path, os.X_OK):
            return path
    raise RuntimeError(
        f"{name} not found (looked at {', '.join(map(str, candidates))}): build it with "
        f"`cargo build -p glia-tests --bin {name}` (tests/run-all builds it), or set {variable}"
    )


def glia_config(port: int, censor_url: str, token: str = GLIA_TOKEN, censor: bool = True) -> dict[str, Any]:
    """glia's config for the tests: the seed modules, for server name `localhost`."""
    modules: list[dict[str, Any]] = [
        {"module": "demo", "config": {"denied_users": [mxid("evilguy")]}},
        {"module": "list_spam_checker", "config": {"evil_users": [mxid("spammer")]}},
        {"module": "message_policy", "config": {"blocked_keywords": ["buy followers"], "errcode": "ORG_GLIA_BLOCKED"}},
        {
            "module": "user_restrictions",
            "config": {"rules": [{"match": mxid("mallory").replace(".", "\\."), "deny": ["invite"]}]},
        },
        {"module": "account_expiry", "config": {"expiry": {mxid("expired"): 0}}},
    ]
    if censor:
        modules.append(
            {
                "module": "event_censorer",
                "timeout": "3s",
                "config": {"endpoint": f"{censor_url}/censor", "timeout_ms": 3000},
            }
        )
    return {
        "listen": f"127.0.0.1:{port}",
        "auth_token": token,
        "deadline": "10s",
        "defaults": {"timeout": "5s"},
        "modules": modules,
    }


@dataclass
class Glia:
    """A running glia."""

    process: Process
    port: int
    config_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        binary: Path,
        workdir: Path,
        config: Mapping[str, Any],
        port: int,
        env: Mapping[str, str] | None = None,
    ) -> Glia:
        """Writes the config, starts glia and waits for `/health`. `env` is the process's
        environment (default: this one's), which the Python hosts it starts inherit."""
        glia = cls.prepare(binary, workdir, config, port, env)
        glia.restart()
        return glia

    @classmethod
    def prepare(
        cls,
        binary: Path,
        workdir: Path,
        config: Mapping[str, Any],
        port: int,
        env: Mapping[str, str] | None = None,
    ) -> Glia:
        """Writes the config; `restart()` starts it (see `start`)."""
        config_path = workdir / "glia.yaml"
        config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        process = Process(
            "glia",
            [str(binary), "serve", "--config", str(config_path)],
            workdir / "glia.log",
            env={**(env or os.environ), "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
        return cls(process, port, config_path)

    def restart(self) -> None:
        """(Re)starts the process and waits until it serves."""
        self.process.start()
        self.wait()

    def wait(self) -> None:
        """Waits until the started process serves; fails if it exited."""
        # Python modules are loaded before glia serves: a few seconds each.
        self.process.wait_healthy(f"{self.url}/health", 90)

    def stop(self) -> None:
        self.process.stop()


# -- NATS ---------------------------------------------------------------------------------


def nats_server_binary() -> str:
    """nats-server from PATH (or /usr/sbin, where Debian installs it); fails if it is missing."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(
            "nats-server not found on PATH: install it with `apt-get install nats-server` "
            "(Debian/Ubuntu; 2.9 or later) or from https://github.com/nats-io/nats-server/releases"
        )
    return found


@dataclass
class NatsServer:
    """A running nats-server on loopback, with its monitoring endpoint."""

    process: Process
    url: str
    monitoring_url: str

    @classmethod
    def start(cls, workdir: Path) -> NatsServer:
        """Starts nats-server on ports it picks itself (`-p -1`, so no race for a free port) and
        waits until it has written them to its ports file."""
        process = Process(
            "nats-server",
            [nats_server_binary(), "-a", "127.0.0.1", "-p", "-1", "-m", "-1", "--ports_file_dir", str(workdir)],
            workdir / "nats-server.log",
        ).start()
        assert process.popen is not None
        ports_file = workdir / f"nats-server_{process.popen.pid}.ports"
        ports: dict[str, list[str]] = {}

        def ready() -> bool:
            nonlocal ports
            if not process.running():
                return True
            try:
                ports = json.loads(ports_file.read_text())
            except (OSError, ValueError):  # not written yet, or half written
                return False
            return bool(ports.get("nats") and ports.get("monitoring"))

        wait_until(ready, 10, "nats-server start-up", process.tail)
        if not process.running():
            raise RuntimeError(f"nats-server exited at start-up\n{process.tail()}")
        return cls(process, ports["nats"][0], ports["monitoring"][0])

    def subscriptions(self) -> list[dict[str, Any]]:
        """The server's client subscriptions (`/subsz`): each one's `subject` and `qgroup`."""
        status, _, body = http_request("GET", f"{self.monitoring_url}/subsz?subs=1&limit=10000")
        assert status == 200, body
        return [s for s in json.loads(body).get("subscriptions_list", []) if not s["subject"].startswith("$SYS.")]

    def stop(self) -> None:
        self.process.stop()


# -- the censor service ---------------------------------------------------------------


class CensorService:
    """`event_censorer`'s endpoint: stars out "darn" in message bodies, and answers every
    other event's content unchanged."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="censor", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> CensorService:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def censor(event: Mapping[str, Any]) -> dict[str, Any]:
        """The new content for `event`."""
        content = dict(event.get("content") or {})
        if event.get("type") == "m.room.message" and isinstance(content.get("body"), str):
            content["body"] = content["body"].replace("darn", "****")
        return content

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # One response is two writes (headers, body): without this, Nagle's algorithm
                # and delayed ACKs hold the body back for ~40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                event = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                service.seen.append(event)
                body = json.dumps(service.censor(event)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


# -- Synapse ----------------------------------------------------------------------------


RATE_UNLIMITED = {"per_second": 10000, "burst_count": 10000}


def bridge_module(glia_url: str, **overrides: Any) -> dict[str, Any]:
    """The bridge's `modules:` entry."""
    config = {
        "glia_url": glia_url,
        "auth_token": GLIA_TOKEN,
        "timeout": BRIDGE_TIMEOUT_S,
        "web_resource_paths": ["/_synapse/client/demo/hello"],
        **overrides,
    }
    return {"module": "glia_synapse.GliaBridge", "config": config}


def embedded_module(config_file: Path, **more: Any) -> dict[str, Any]:
    """The embedded placement's `modules:` entry: glia in Synapse's process, from `config_file`."""
    return {"module": "glia_embedded.GliaEmbedded", "config": {"config_file": str(config_file), **more}}


def synapse_config(
    workdir: Path, port: int, modules: list[dict[str, Any]], server_name: str = SERVER_NAME
) -> dict[str, Any]:
    """A loopback Synapse: SQLite, one client listener, no federation, rate limits raised."""
    return {
        "server_name": server_name,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "log_config": str(workdir / "log.yaml"),
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(workdir / "signing.key"),
        "registration_shared_secret": uuid.uuid4().hex,
        "macaroon_secret_key": uuid.uuid4().hex,
        "form_secret": uuid.uuid4().hex,
        "report_stats": False,
        "enable_metrics": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "rc_message": RATE_UNLIMITED,
        "rc_registration": RATE_UNLIMITED,
        "rc_room_creation": RATE_UNLIMITED,
        "rc_login": {"address": RATE_UNLIMITED, "account": RATE_UNLIMITED, "failed_attempts": RATE_UNLIMITED},
        "rc_joins": {"local": RATE_UNLIMITED, "remote": RATE_UNLIMITED},
        "rc_invites": {"per_room": RATE_UNLIMITED, "per_user": RATE_UNLIMITED, "per_issuer": RATE_UNLIMITED},
        "rc_admin_redaction": RATE_UNLIMITED,
        "modules": modules,
    }


def synapse_log_config(log_path: Path, bridge_level: str = "DEBUG") -> dict[str, Any]:
    """Synapse's logging: INFO to a file (the bridge at `bridge_level`)."""
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(request)s: %(message)s"}},
        "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter", "request": ""}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(log_path),
                "formatter": "plain",
                "filters": ["context"],
            }
        },
        "loggers": {"glia_synapse": {"level": bridge_level}, "synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


@dataclass
class Synapse:
    """A running Synapse."""

    process: Process
    port: int
    shared_secret: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        workdir: Path,
        modules: list[dict[str, Any]],
        port: int | None = None,
        bridge_log_level: str = "DEBUG",
        server_name: str = SERVER_NAME,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> Synapse:
        """Writes a config (and signing key), starts Synapse, waits for `/health`.

        `overrides` replaces top-level keys of `synapse_config`'s config (a `None` value
        removes the key); `env` is the process's environment (default: this one's); `python`
        the interpreter Synapse runs in (another venv's, to compare two builds of a package)."""
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        config = synapse_config(workdir, port, modules, server_name)
        for key, value in (overrides or {}).items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        log_path = workdir / "homeserver.log"
        (workdir / "log.yaml").write_text(yaml.safe_dump(synapse_log_config(log_path, bridge_log_level)))
        write_signing_key(workdir / "signing.key")
        config_path = workdir / "homeserver.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        process = Process(
            "synapse",
            [python, "-m", "synapse.app.homeserver", "--config-path", str(config_path)],
            workdir / "synapse.out",
            env=env,
            cwd=workdir,
        ).start()
        synapse = cls(process, port, config["registration_shared_secret"], log_path)

        def describe() -> str:
            return process.tail() + "\n" + Process("synapse log", [], log_path).tail()

        process.wait_healthy(f"{synapse.url}/health", 90, describe)
        return synapse

    def stop(self) -> None:
        self.process.stop()

    def log(self) -> str:
        """Synapse's log so far."""
        return self.log_path.read_text(errors="replace")

    def register(self, localpart: str, admin: bool = False) -> Client:
        """Registers a user through the shared-secret admin API; returns their client."""
        reply = self.try_register(localpart, admin)
        assert reply.status == 200, f"registering {localpart}: {reply.status} {reply.body!r}"
        return Client(self.url, reply.body["access_token"], reply.body["user_id"])

    def try_register(self, localpart: str, admin: bool = False) -> Reply:
        """Asks the shared-secret admin API to register a user; returns Synapse's answer."""
        url = f"{self.url}/_synapse/admin/v1/register"
        status, _, body = http_request("GET", url)
        assert status == 200, body
        nonce = json.loads(body)["nonce"]
        password = "pw-" + localpart
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), b"admin" if admin else b"notadmin"])
        )
        reply = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        status, headers, body = http_request("POST", url, reply)
        return Reply(status, json_or_raw(body), headers)


def write_signing_key(path: Path) -> None:
    """A fresh ed25519 signing key for the homeserver."""
    from signedjson.key import generate_signing_key, write_signing_keys

    with open(path, "w") as f:
        write_signing_keys(f, [generate_signing_key("a_e2e")])


# -- the client ---------------------------------------------------------------------------


@dataclass
class Reply:
    """A client-server API answer."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None


@dataclass
class Client:
    """One user's client."""

    base_url: str
    token: str
    user_id: str
    _txn: int = 0

    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Reply:
        """Calls the API; `path` starts at the server root."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        status, response_headers, raw = http_request(method, self.base_url + path, body, headers)
        return Reply(status, json_or_raw(raw), response_headers)

    def whoami(self) -> Reply:
        return self.request("GET", "/_matrix/client/v3/account/whoami")

    def create_room(self, **body: Any) -> Reply:
        return self.request("POST", "/_matrix/client/v3/createRoom", body)

    def join(self, room_id: str) -> Reply:
        return self.request("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {})

    def invite(self, room_id: str, user_id: str) -> Reply:
        return self.request("POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite", {"user_id": user_id})

    def send_path(self, room_id: str) -> str:
        """A fresh `PUT /send` path (new transaction id)."""
        self._txn += 1
        return f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/e2e{self._txn}.{uuid.uuid4().hex[:8]}"

    def send_text(self, room_id: str, text: str) -> Reply:
        return self.request("PUT", self.send_path(room_id), {"msgtype": "m.text", "body": text})

    def event(self, room_id: str, event_id: str) -> Reply:
        return self.request("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}")

    def messages(self, room_id: str, limit: int = 50) -> Reply:
        return self.request("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit={limit}")

    def message_bodies(self, room_id: str) -> list[tuple[str, str]]:
        """(sender, body) of the room's messages, oldest first."""
        reply = self.messages(room_id)
        assert reply.status == 200, reply
        return [
            (e["sender"], e["content"].get("body"))
            for e in reversed(reply.body["chunk"])
            if e["type"] == "m.room.message"
        ]
