"""The differential end-to-end harness: the same scripted modules run once inside a real
Synapse and once through the bridge and glia, and a Matrix client compares what it sees.

- Synapse **native** loads the scripted modules s1, s2 (`oracle/scripted_synapse.py`) from
  `modules:`: Synapse itself is the oracle.
- Synapse **glia** loads the bridge (`callbacks: auto`), which forwards to glia, where the
  very same module (`scripted_synapse.ScriptedModule`, unchanged, with the same `config:`) runs
  in glia's Python hosts (`deploy/python-host/`), one child process per module, web resource
  included, with the bridge's ModuleApi channel (which also carries a module's `soft_failed`
  back to Synapse's event).
- Both read one script file (`Differential.script`), so a test sets a behaviour once; each
  side appends its calls to its own calls file.
- Synapse **remote** (`Differential.remote`, started on first use) is a plain homeserver that
  federates with both over TLS on loopback, for the federated scenarios.

Every homeserver is named `localhost:<federation port>`; a client's view of a reply is
compared after each side's server name is replaced by `HS` (`Side.normalise`).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from harness import (
    GLIA_TOKEN,
    RATE_UNLIMITED,
    Client,
    Glia,
    Reply,
    Synapse,
    bridge_module,
    free_port,
    http_request,
    json_or_raw,
    wait_until,
)
from hosting import ORACLE, bridge_module_api, python_path_env, python_section

sys.path.insert(0, str(ORACLE))

from scripted_common import read_calls

T = TypeVar("T")

#: s1 registers every callback the tests use; s2 those where the order of modules matters.
S1_CALLBACKS = (
    "check_event_for_spam",
    "user_may_join_room",
    "user_may_invite",
    "federated_user_may_invite",
    "user_may_create_room",
    "user_may_send_state_event",
    "check_media_file_for_spam",
    "check_login_for_spam",
    "check_event_allowed",
    "on_create_room",
    "is_user_expired",
    "on_user_registration",
    "on_user_login",
    "get_media_config_for_user",
    "is_user_allowed_to_upload_media_of_size",
    "get_media_upload_limits_for_user",
    "on_media_upload_limit_exceeded",
    "get_ratelimit_override_for_user",
    "on_account_data_updated",
    "add_field_to_unsigned",
    "on_update",
    "default_batch_size",
    "min_batch_size",
    "on_event_delivered_over_federation",
)
S2_CALLBACKS = (
    "check_event_for_spam",
    "user_may_invite",
    "federated_user_may_invite",
    "user_may_create_room",
    "check_event_allowed",
    "on_create_room",
    "is_user_expired",
    "get_media_config_for_user",
    "get_ratelimit_override_for_user",
    "add_field_to_unsigned",
)
MODULES: dict[str, tuple[str, ...]] = {"s1": S1_CALLBACKS, "s2": S2_CALLBACKS}
#: s2 is invoked in glia only once s1 has answered without deciding (as Synapse does), except
#: for `user_may_create_room`, where it runs in parallel: the documented difference.
S2_INVOKE = {"default": "sequential", "user_may_create_room": "parallel"}
#: s2 is also an auth checker for this login type, with these fields.
LOGIN_TYPE = ("org.example.scripted", ("token",))
#: s1 registers the same login type first, with other fields (issue 24.5): Synapse accepts it,
#: a login then carries the later list (s2's) and both checkers are asked.
S1_LOGIN_FIELDS = ("token", "pin")
#: The docs' demo resource, which s1 serves (through glia from its Python host).
DEMO_PATH = "/_synapse/client/demo/hello"
#: The invite ratelimit per issuer on both homeservers (the ratelimit override test lifts it).
INVITES_PER_ISSUER = {"per_second": 0.001, "burst_count": 2}
#: An application service registered on both homeservers (no URL: Synapse pushes it nothing),
#: whose token acts as its sender, `@APP_SERVICE_SENDER:<server>`.
APP_SERVICE_ID = "e2e-appservice"
APP_SERVICE_TOKEN = "e2e-appservice-token"
APP_SERVICE_SENDER = "e2e-appservice-bot"


def write_app_service(directory: Path) -> Path:
    """The application service's registration file."""
    path = directory / "appservice.yaml"
    registration = {
        "id": APP_SERVICE_ID,
        "url": None,
        "as_token": APP_SERVICE_TOKEN,
        "hs_token": "e2e-appservice-hs-token",
        "sender_localpart": APP_SERVICE_SENDER,
        "namespaces": {"users": [{"exclusive": False, "regex": f"@{APP_SERVICE_SENDER}-.*"}]},
        "rate_limited": False,
    }
    path.write_text(json.dumps(registration))  # JSON is YAML
    return path


# -- TLS for federation ------------------------------------------------------------------


def write_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `localhost` and 127.0.0.1, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def federating_overrides(
    client_port: int, federation_port: int, cert: tuple[Path, Path], **more: Any
) -> dict[str, Any]:
    """Config for a homeserver that federates on loopback: a plain HTTP listener for
    clients (and media), a TLS listener for federation and keys, certificates not checked,
    loopback not blocked, keys fetched from each server itself."""

    def listener(port: int, tls: bool, names: list[str]) -> dict[str, Any]:
        return {
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": tls,
            "x_forwarded": False,
            "resources": [{"names": names, "compress": False}],
        }

    return {
        "listeners": [
            listener(client_port, False, ["client", "media"]),
            listener(federation_port, True, ["federation", "keys"]),
        ],
        "tls_certificate_path": str(cert[0]),
        "tls_private_key_path": str(cert[1]),
        "federation_verify_certificates": False,
        "ip_range_blacklist": [],
        "federation_domain_whitelist": None,
        "trusted_key_servers": [],
        **more,
    }


# -- the two sides -------------------------------------------------------------------------


@dataclass
class Side:
    """One homeserver of the comparison, with its users (registered on first use)."""

    label: str
    synapse: Synapse
    server_name: str
    calls_path: Path | None = None
    users: dict[str, Client] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.label)

    def user(self, localpart: str, admin: bool = False) -> Client:
        """`localpart`'s client on this homeserver (registered the first time)."""
        if localpart not in self.users:
            self.users[localpart] = self.synapse.register(localpart, admin=admin)
        return self.users[localpart]

    def mxid(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def calls(self, callback: str | None = None, module: str | None = None) -> list[dict[str, Any]]:
        """The calls the scripted modules recorded on this side (optionally of one callback
        or one module), oldest first, with server names normalised."""
        assert self.calls_path is not None, f"{self.label} has no scripted modules"
        return [
            self.normalise(c)
            for c in read_calls(self.calls_path)
            if (callback is None or c["callback"] == callback) and (module is None or c["module"] == module)
        ]

    def called(self, callback: str) -> list[str]:
        """Which modules were called for `callback`, in order."""
        return [c["module"] for c in self.calls(callback)]

    def normalise(self, value: Any) -> Any:
        """`value` with this side's server name written `HS` and its client URL `URL`."""
        if isinstance(value, str):
            return value.replace(self.synapse.url, "URL").replace(self.server_name, "HS")
        if isinstance(value, Mapping):
            return {self.normalise(k): self.normalise(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.normalise(v) for v in value]
        return value

    def seen(self, reply: Reply, ignore: Iterable[str] = ()) -> tuple[int, Any]:
        """What a client sees of an error reply (status and whole body, normalised, but for
        the `ignore`d keys), or of a success (the status only: ids differ between homeservers)."""
        if reply.status < 400:
            return reply.status, None
        body = reply.body.decode(errors="replace") if isinstance(reply.body, bytes) else reply.body
        if isinstance(body, Mapping):
            body = {k: ("<ignored>" if k in ignore else v) for k, v in body.items()}
        return reply.status, self.normalise(body)

    def log_tail(self, lines: int = 40) -> str:
        """The end of this side's Synapse log, without the client API's access lines."""
        text = [line for line in self.synapse.log().splitlines() if "synapse.access.http." not in line][-lines:]
        return f"--- {self.label} Synapse log ---\n" + "\n".join(text)


@dataclass(frozen=True)
class Both(Generic[T]):
    """One value per side (a room id, a reply, ...)."""

    native: T
    glia: T

    def __getitem__(self, side: Side) -> T:
        return self.native if side.label == "native" else self.glia


def compare_sides(
    native: Side,
    via_glia: Side,
    action: Callable[[Side], Reply],
    ignore: Iterable[str] = (),
    glia_log: Callable[[], str] = str,
) -> Both[Reply]:
    """Does one client action on the native side, then on the glia side, and asserts the
    client saw the same thing (status; for errors errcode, message and every extra field but
    the `ignore`d ones, which need only be present on both or on neither)."""
    replies = Both(action(native), action(via_glia))
    seen_natively, seen_via_glia = native.seen(replies.native, ignore), via_glia.seen(replies.glia, ignore)
    if seen_natively != seen_via_glia:
        raise AssertionError(
            f"the client saw different things:\n  native: {seen_natively}\n  glia:   {seen_via_glia}\n"
            f"{native.log_tail()}\n{via_glia.log_tail()}\n{glia_log()}"
        )
    return replies


@dataclass
class Differential:
    """The running comparison: Synapse native, Synapse with glia, and what they share."""

    native: Side
    glia_side: Side
    glia: Glia
    script_path: Path
    workdir: Path
    cert: tuple[Path, Path]
    _remote: Side | None = None

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.native, self.glia_side

    # -- scripts and calls --

    def script(self, script: Mapping[str, Mapping[str, Any]]) -> None:
        """Replaces the script both forms of the modules read at their next call, and
        empties both calls files (what is recorded next is what this script did)."""
        temporary = self.script_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(script))
        os.replace(temporary, self.script_path)
        self.clear_calls()

    def clear_calls(self) -> None:
        """Empties both calls files."""
        for side in self.sides:
            assert side.calls_path is not None
            side.calls_path.write_text("")

    def reset(self) -> None:
        """Empties the script (every callback neutral) and both calls files."""
        self.script({})

    # -- acting on both --

    def on_both(self, action: Callable[[Side], T]) -> Both[T]:
        """Does `action` on the native side, then on the glia side."""
        return Both(action(self.native), action(self.glia_side))

    def compare(self, action: Callable[[Side], Reply], ignore: Iterable[str] = ()) -> Both[Reply]:
        """Does one client action on both sides and asserts the client saw the same thing
        (see `compare_sides`)."""
        return compare_sides(self.native, self.glia_side, action, ignore, self.glia.process.tail)

    def same_calls(self, callback: str) -> list[str]:
        """Asserts both sides called the same modules for `callback`, in the same order;
        returns them."""
        native, via_glia = self.native.called(callback), self.glia_side.called(callback)
        assert native == via_glia, f"{callback}: Synapse called {native}, glia {via_glia}"
        return native

    def wait_for_calls(
        self,
        callback: str,
        count: int,
        sides: Iterable[Side] | None = None,
        where: Callable[[dict[str, Any]], bool] = lambda call: True,
    ) -> None:
        """Waits until each side recorded at least `count` calls of `callback` (for which
        `where` holds): for the callbacks Synapse runs in the background."""
        for side in sides or self.sides:
            wait_until(
                lambda side=side: len([c for c in side.calls(callback) if where(c)]) >= count,  # type: ignore[misc]
                15,
                f"{count} calls of {callback} on {side.label}",
                lambda side=side: json.dumps(side.calls(), indent=1)[-3000:],  # type: ignore[misc]
            )

    # -- the federating homeserver --

    @property
    def remote(self) -> Side:
        """A plain homeserver federating with both (started on first use)."""
        if self._remote is None:
            self._remote = start_side(
                "remote", self.workdir / "remote", self.cert, [], None, None, invites_per_issuer=RATE_UNLIMITED
            )
        return self._remote

    def stop(self) -> None:
        for side in (*self.sides, *([self._remote] if self._remote else [])):
            side.synapse.stop()
        self.glia.stop()


def start_side(
    label: str,
    workdir: Path,
    cert: tuple[Path, Path],
    modules: list[dict[str, Any]],
    env: Mapping[str, str] | None,
    calls_path: Path | None,
    invites_per_issuer: Mapping[str, float] = INVITES_PER_ISSUER,
    ports: tuple[int, int] | None = None,
    app_services: Iterable[Path] = (),
) -> Side:
    """Starts one federating homeserver named `localhost:<federation port>` (`ports`: its
    client and federation ports, when its name must be known before it starts)."""
    client_port, federation_port = ports or (free_port(), free_port())
    server_name = f"localhost:{federation_port}"
    overrides = federating_overrides(
        client_port,
        federation_port,
        cert,
        rc_invites={"per_room": RATE_UNLIMITED, "per_user": RATE_UNLIMITED, "per_issuer": dict(invites_per_issuer)},
        bcrypt_rounds=4,  # the tests register many users; Synapse's default hash costs ~0.3 s each
        app_service_config_files=[str(path) for path in app_services],
    )
    synapse = Synapse.start(workdir, modules, port=client_port, server_name=server_name, overrides=overrides, env=env)
    return Side(label, synapse, server_name, calls_path)


def native_modules(script: Path, calls: Path) -> list[dict[str, Any]]:
    """Synapse native's `modules:`: the scripted modules, s1 also serving the demo resource."""
    return [
        {
            "module": "scripted_synapse.ScriptedModule",
            "config": {
                "name": name,
                "script": str(script),
                "calls": str(calls),
                "callbacks": list(callbacks),
                **({"web_resources": [DEMO_PATH]} if name == "s1" else {}),
                **({"login_types": {LOGIN_TYPE[0]: list(LOGIN_TYPE[1])}} if name == "s2" else {}),
                **({"login_types": {LOGIN_TYPE[0]: list(S1_LOGIN_FIELDS)}} if name == "s1" else {}),
            },
        }
        for name, callbacks in MODULES.items()
    ]


def glia_hosted_config(
    port: int, server_name: str, script: Path, calls: Path, module_api_port: int | None = None
) -> dict[str, Any]:
    """glia running the scripted modules exactly as Synapse native is given them (the same
    `modules:` entries, with a `name:`), each in a Python host it supervises, with the bridge's
    ModuleApi channel on `module_api_port` when given."""
    modules: list[dict[str, Any]] = [
        {**entry, "name": entry["config"]["name"]} for entry in native_modules(script, calls)
    ]
    modules[1]["invoke"] = S2_INVOKE
    return {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "python": python_section(server_name, module_api_port),
        "modules": modules,
    }


def glia_knows_the_modules(glia: Glia, modules: Mapping[str, Iterable[str]] = MODULES) -> bool:
    """Whether glia has planned the remote modules' callbacks (they answered `describe`)."""
    status, _, body = http_request(
        "GET", f"{glia.url}/_glia/v1/modules", headers={"Authorization": f"Bearer {GLIA_TOKEN}"}
    )
    if status != 200:
        return False
    plans = json.loads(body).get("plans") or {}
    return all(callback in plans for callbacks in modules.values() for callback in callbacks)


def oracle_env() -> dict[str, str]:
    """This environment, with the oracle's directory on `PYTHONPATH` (for a Synapse, or a
    glia's Python hosts, loading the scripted modules)."""
    return python_path_env(ORACLE)


def start_differential(glia_bin: Path, workdir: Path) -> Differential:
    """Starts glia with the hosted modules, and the two homeservers."""
    script = workdir / "script.json"
    script.write_text("{}")
    native_calls, glia_calls = workdir / "calls-native.jsonl", workdir / "calls-glia.jsonl"
    cert = write_self_signed_cert(workdir)
    started: list[Any] = []
    try:
        glia_ports = free_port(), free_port()
        glia_port, module_api_port = free_port(), free_port()
        glia_dir = workdir / "glia"
        glia_dir.mkdir()
        config = glia_hosted_config(glia_port, f"localhost:{glia_ports[1]}", script, glia_calls, module_api_port)
        glia = Glia.start(glia_bin, glia_dir, config, glia_port, env=oracle_env())
        started.append(glia)
        wait_until(lambda: glia_knows_the_modules(glia), 20, "glia planning the hosted modules", glia.process.tail)
        native_config = native_modules(script, native_calls)
        app_service = write_app_service(workdir)
        native = start_side(
            "native", workdir / "native", cert, native_config, oracle_env(), native_calls, app_services=[app_service]
        )
        started.append(native.synapse)
        via_glia = start_side(
            "glia",
            workdir / "glia-synapse",
            cert,
            [bridge_module(glia.url, timeout=10, module_api=bridge_module_api(module_api_port))],
            None,
            glia_calls,
            ports=glia_ports,
            app_services=[app_service],
        )
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return Differential(native, via_glia, glia, script, workdir, cert)


# -- small client helpers ----------------------------------------------------------------------


def upload(client: Client, content: bytes, content_type: str = "application/octet-stream") -> Reply:
    """`POST /_matrix/media/v3/upload` with raw bytes."""
    headers = {"Authorization": f"Bearer {client.token}", "Content-Type": content_type}
    status, response_headers, raw = http_request(
        "POST", f"{client.base_url}/_matrix/media/v3/upload?filename=f.bin", content, headers
    )
    return Reply(status, json_or_raw(raw), response_headers)


def room_path(room_id: str, rest: str) -> str:
    return f"/_matrix/client/v3/rooms/{quote(room_id)}/{rest}"


def fresh(prefix: str) -> str:
    """A localpart nobody has used yet."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
