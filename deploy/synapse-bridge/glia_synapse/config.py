"""The bridge's `config:` block, checked once when Synapse parses its config.

```yaml
modules:
  - module: glia_synapse.GliaBridge
    config:
      glia_url: http://127.0.0.1:8787      # required; or unix:/run/glia/glia.sock, or a list:
      # glia_url: [unix:/run/glia/glia.sock, http://glia-a:8787, http://glia-b:8787]
      transport: lean                      # lean (the bridge's own client) | synapse (Synapse's)
      connect_timeout: 1                   # seconds to connect to one coordinator
      attempt_timeout: 2                   # seconds one coordinator gets before a decision
                                           # moves on (default: the whole timeout)
      auth_token_path: /etc/glia/token     # or auth_token: "..."
      callbacks: auto                      # auto | all | [names]
      timeout: {default: 6, check_event_for_spam: 2}   # seconds; or one number
      fail_open: {user_may_create_room: true}          # bool, or per callback (+ default)
      web_resources: true
      web_resource_paths: [/_synapse/client/demo/hello]  # used when glia is down at start-up
      web_resource_prefixes: [/_synapse/client]          # glia's resources below these, whenever listed
      login_types: {org.example.token: [token]}          # auth checker fields per login type
      media_bytes: 524288                  # bytes of a media file sent to check_media_file_for_spam
      startup_timeout: 2                   # seconds for the start-up discovery request
      discovery_retry_interval: 10         # seconds between retries while glia is down
      notifications: once                  # once (one process forwards each) | every_process
      module_api:                          # the ModuleApi for glia's Python hosts (optional)
        listen: 127.0.0.1:8788             # host:port; loopback unless you need otherwise
        secret_path: /etc/glia/module-api-secret   # or secret: "..."
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synapse.module_api.errors import ConfigError

from glia_synapse import files
from glia_synapse.catalogue import BACKGROUND_CONTROLLER, BY_NAME, PRESENCE_PAIR
from glia_synapse.transport import Address, parse_address

AUTO, ALL = "auto", "all"
DEFAULT_TIMEOUT = 6.0
#: Base64 makes these 512 KiB about 683 KiB of request, under glia's default 1 MiB body limit.
DEFAULT_MEDIA_BYTES = 512 * 1024
LEAN, SYNAPSE = "lean", "synapse"
#: `notifications`: each notification Synapse invokes in every process forwarded from one of
#: them (`once`), or from each (`every_process`, as the bridge did before).
ONCE, EVERY_PROCESS = "once", "every_process"
KNOWN_KEYS = {
    "glia_url",
    "transport",
    "connect_timeout",
    "attempt_timeout",
    "auth_token",
    "auth_token_path",
    "callbacks",
    "timeout",
    "fail_open",
    "web_resources",
    "web_resource_paths",
    "web_resource_prefixes",
    "login_types",
    "media_bytes",
    "startup_timeout",
    "discovery_retry_interval",
    "module_api",
    "notifications",
}
MODULE_API_KEYS = {"listen", "secret", "secret_path"}
#: Where glia's modules put their web resources (glia warns about any other place), and the
#: default `web_resource_prefixes`.
SYNAPSE_CLIENT = "/_synapse/client"
#: Synapse's own resources below `SYNAPSE_CLIENT` (1.163: `build_synapse_client_resource_tree`
#: and the password reset form of `homeserver.py`). A prefix registered at one of these paths
#: would replace Synapse's resource (module resources are merged into the listener's map last,
#: keyed by path), so a prefix may be neither one of them nor below one.
SYNAPSE_CLIENT_RESOURCES = (
    "/_synapse/client/pick_idp",
    "/_synapse/client/pick_username",
    "/_synapse/client/new_user_consent",
    "/_synapse/client/sso_register",
    "/_synapse/client/unsubscribe",
    "/_synapse/client/media_upload_limit_exceeded",
    "/_synapse/client/oidc",
    "/_synapse/client/saml2",
    "/_synapse/client/rendezvous",
    "/_synapse/client/v1/config/federation_whitelist",
    "/_synapse/client/password_reset",
)


@dataclass(frozen=True)
class ModuleApiListener:
    """Where the bridge serves the `ModuleApi` to glia's Python hosts, and their secret."""

    host: str
    port: int
    secret: str


@dataclass(frozen=True)
class BridgeConfig:
    """The checked config."""

    #: The coordinators, in order of preference (the first reachable one is used).
    glia_urls: tuple[Address, ...]
    auth_token: str | None = None
    #: `lean` (the bridge's own HTTP client) or `synapse` (Synapse's `SimpleHttpClient`).
    transport: str = LEAN
    connect_timeout: float = 1.0
    #: How long one coordinator may take before a decision is sent to the next (None: the
    #: whole timeout, i.e. only unreachable coordinators are skipped).
    attempt_timeout: float | None = None
    #: `auto`, `all`, or the callbacks to register.
    callbacks: str | tuple[str, ...] = AUTO
    #: Above glia's default per-module timeout (5 s), so glia's own failure policies answer
    #: first and this only bounds a glia that does not answer at all.
    default_timeout: float = DEFAULT_TIMEOUT
    timeouts: Mapping[str, float] = field(default_factory=dict)
    #: Overrides of the catalogue's failure modes; `default` applies to every callback.
    fail_open: Mapping[str, bool] = field(default_factory=dict)
    web_resources: bool = True
    web_resource_paths: tuple[str, ...] = ()
    #: Paths below which the bridge serves whatever web resources glia lists (at start-up or
    #: later), so a process started while glia was down serves them once glia is back.
    web_resource_prefixes: tuple[str, ...] = (SYNAPSE_CLIENT,)
    login_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: How much of a media file `check_media_file_for_spam` sends (0: none).
    media_bytes: int = DEFAULT_MEDIA_BYTES
    startup_timeout: float = 2.0
    discovery_retry_interval: float = 10.0
    #: The `ModuleApi` channel for glia's Python hosts (none: not served).
    module_api: ModuleApiListener | None = None
    #: `once` or `every_process` (see `once`).
    notifications: str = ONCE

    @property
    def glia_url(self) -> str:
        """The configured coordinators, for messages."""
        return ", ".join(a.url for a in self.glia_urls)

    def timeout_for(self, callback: str) -> float:
        """Seconds the bridge waits for glia's answer to `callback`."""
        return self.timeouts.get(callback, self.default_timeout)

    def fails_open(self, callback: str) -> bool:
        """Whether `callback` returns its "no opinion" value when glia cannot decide."""
        spec = BY_NAME[callback]
        if not spec.may_fail_open:
            return False
        return self.fail_open.get(callback, self.fail_open.get("default", spec.fail_open))


def parse_config(raw: Any) -> BridgeConfig:
    """Checks the `config:` block; raises `ConfigError` naming the key."""
    if not isinstance(raw, Mapping):
        raise ConfigError("expected a mapping", ())
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; known keys: {', '.join(sorted(KNOWN_KEYS))}", (unknown[0],))
    default_timeout, timeouts = _per_callback(raw.get("timeout", DEFAULT_TIMEOUT), "timeout", _positive_number)
    fail_default, fail_open = _per_callback(raw.get("fail_open", {}), "fail_open", _boolean)
    if fail_default is not None:
        fail_open["default"] = fail_default
    return BridgeConfig(
        glia_urls=_urls(raw.get("glia_url")),
        auth_token=_token(raw),
        transport=_transport(raw.get("transport", LEAN)),
        connect_timeout=_positive_number(raw.get("connect_timeout", 1), ("connect_timeout",)),
        attempt_timeout=(
            None
            if raw.get("attempt_timeout") is None
            else _positive_number(raw.get("attempt_timeout"), ("attempt_timeout",))
        ),
        callbacks=_callbacks(raw.get("callbacks", AUTO)),
        default_timeout=default_timeout if default_timeout is not None else DEFAULT_TIMEOUT,
        timeouts=timeouts,
        fail_open=fail_open,
        web_resources=_boolean(raw.get("web_resources", True), ("web_resources",)),
        web_resource_paths=tuple(
            _web_path(p, ("web_resource_paths", str(i)))
            for i, p in enumerate(_list(raw.get("web_resource_paths", []), ("web_resource_paths",)))
        ),
        web_resource_prefixes=tuple(
            _web_prefix(p, ("web_resource_prefixes", str(i)))
            for i, p in enumerate(_list(raw.get("web_resource_prefixes", [SYNAPSE_CLIENT]), ("web_resource_prefixes",)))
        ),
        login_types=_login_types(raw.get("login_types", {})),
        media_bytes=_byte_count(raw.get("media_bytes", DEFAULT_MEDIA_BYTES), ("media_bytes",)),
        startup_timeout=_positive_number(raw.get("startup_timeout", 2), ("startup_timeout",)),
        discovery_retry_interval=_positive_number(
            raw.get("discovery_retry_interval", 10), ("discovery_retry_interval",)
        ),
        module_api=_module_api(raw.get("module_api")),
        notifications=_one_of(raw.get("notifications", ONCE), (ONCE, EVERY_PROCESS), ("notifications",)),
    )


def _urls(value: Any) -> tuple[Address, ...]:
    example = "e.g. http://127.0.0.1:8787, unix:/run/glia/glia.sock, or a list of them"
    if isinstance(value, str) and value:
        return (_url(value, ("glia_url",)),)
    if isinstance(value, list) and value:
        urls = tuple(_url(v, ("glia_url", str(i))) for i, v in enumerate(value))
        seen = set()
        for i, address in enumerate(urls):
            if address in seen:
                raise ConfigError(f"{address.url!r} is listed twice", ("glia_url", str(i)))
            seen.add(address)
        return urls
    raise ConfigError(f"required: glia's base URL, {example}", ("glia_url",))


def _url(value: Any, path: tuple[str, ...]) -> Address:
    if not isinstance(value, str) or not value:
        raise ConfigError("expected a URL string", path)
    try:
        return parse_address(value.rstrip("/") if not value.startswith("unix:") else value)
    except ValueError as e:
        raise ConfigError(str(e), path) from None


def _transport(value: Any) -> str:
    return _one_of(value, (LEAN, SYNAPSE), ("transport",))


def _one_of(value: Any, choices: tuple[str, str], path: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"expected {choices[0]!r} or {choices[1]!r}", path)
    return str(value)


def _token(raw: Mapping[str, Any]) -> str | None:
    return _secret(raw, "auth_token", "auth_token_path", ())


def _secret(raw: Mapping[str, Any], inline: str, file: str, at: tuple[str, ...]) -> str | None:
    """A secret given inline (`inline`) or in a file (`file`), or None."""
    token, path = raw.get(inline), raw.get(file)
    if token is not None and path is not None:
        raise ConfigError(f"give {inline} or {file}, not both", (*at, file))
    if token is not None:
        if not isinstance(token, str) or not token.strip():
            raise ConfigError("expected a non-empty string", (*at, inline))
        return token.strip()
    if path is None:
        return None
    if not isinstance(path, str):
        raise ConfigError("expected a file path", (*at, file))
    try:
        token = files.read_text(path).strip()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}", (*at, file)) from e
    if not token:
        raise ConfigError(f"{path} is empty", (*at, file))
    return token


def _module_api(value: Any) -> ModuleApiListener | None:
    if value is None:
        return None
    at = ("module_api",)
    if not isinstance(value, Mapping):
        raise ConfigError("expected a mapping: {listen, secret or secret_path}", at)
    unknown = sorted(set(value) - MODULE_API_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r}; known keys: {', '.join(sorted(MODULE_API_KEYS))}", (*at, unknown[0])
        )
    secret = _secret(value, "secret", "secret_path", at)
    if secret is None:
        raise ConfigError("give secret or secret_path: glia's python.module_api secret", at)
    listen = _string(value.get("listen", "127.0.0.1:8788"), (*at, "listen"))
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{listen!r}: expected host:port", (*at, "listen"))
    return ModuleApiListener(host.strip("[]"), int(port), secret)


def _callbacks(value: Any) -> str | tuple[str, ...]:
    if value in (AUTO, ALL):
        return str(value)
    names = tuple(_list(value, ("callbacks",), what=f"{AUTO!r}, {ALL!r} or a list of callback names"))
    for i, name in enumerate(names):
        if name not in BY_NAME:
            raise ConfigError(f"unknown callback {name!r}; known: {', '.join(sorted(BY_NAME))}", ("callbacks", str(i)))
    if (PRESENCE_PAIR[0] in names) != (PRESENCE_PAIR[1] in names):
        raise ConfigError(f"Synapse needs both presence router callbacks {PRESENCE_PAIR} or neither", ("callbacks",))
    if any(name in names for name in BACKGROUND_CONTROLLER[1:]) and BACKGROUND_CONTROLLER[0] not in names:
        raise ConfigError("default_batch_size and min_batch_size come only with on_update", ("callbacks",))
    return names


def _per_callback(value: Any, key: str, check: Any) -> tuple[Any, dict[str, Any]]:
    """A setting given once (`5`) or per callback (`{default: 5, name: 1}`)."""
    if not isinstance(value, Mapping):
        return check(value, (key,)), {}
    settings: dict[str, Any] = {}
    default = None
    for name, setting in value.items():
        if name == "default":
            default = check(setting, (key, name))
        elif name not in BY_NAME:
            raise ConfigError(f"unknown callback {name!r}", (key, str(name)))
        else:
            settings[name] = check(setting, (key, name))
    return default, settings


def _login_types(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError("expected a mapping of login type to its list of fields", ("login_types",))
    login_types = {}
    for login_type, fields in value.items():
        path = ("login_types", str(login_type))
        login_types[str(login_type)] = tuple(
            _string(name, (*path, str(i))) for i, name in enumerate(_list(fields, path))
        )
    return login_types


def _web_path(value: Any, path: tuple[str, ...]) -> str:
    text = _string(value, path)
    if not text.startswith("/") or text.startswith(("/_matrix", "/_glia")):
        raise ConfigError(f"{text!r}: expected an absolute path outside /_matrix and /_glia", path)
    return text


def _web_prefix(value: Any, path: tuple[str, ...]) -> str:
    """A `web_resource_prefixes` entry: `/_synapse/client` or a path below it, outside
    Synapse's own resources there; without a trailing slash (Synapse's resource tree would
    take one for a segment of its own)."""
    text = _string(value, path)
    prefix = text.rstrip("/")
    if not _at_or_below(prefix, SYNAPSE_CLIENT):
        raise ConfigError(
            f"{text!r}: expected {SYNAPSE_CLIENT} or a path below it (list resources elsewhere under "
            "web_resource_paths)",
            path,
        )
    for own in SYNAPSE_CLIENT_RESOURCES:
        if _at_or_below(prefix, own):
            raise ConfigError(f"{text!r}: {own} is Synapse's own resource; a prefix there would replace it", path)
    return prefix


def _at_or_below(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + "/")


def _list(value: Any, path: tuple[str, ...], what: str = "a list") -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"expected {what}", path)
    return value


def _string(value: Any, path: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError("expected a non-empty string", path)
    return str(value)


def _boolean(value: Any, path: tuple[str, ...]) -> bool:
    if not isinstance(value, bool):
        raise ConfigError("expected true or false", path)
    return value


def _byte_count(value: Any, path: tuple[str, ...]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("expected a number of bytes (0 or more)", path)
    return value


def _positive_number(value: Any, path: tuple[str, ...]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError("expected a positive number of seconds", path)
    return float(value)
