"""The bridge's `config:` block, checked once when Synapse parses its config.

```yaml
modules:
  - module: glia_synapse.GliaBridge
    config:
      glia_url: http://127.0.0.1:8787      # required
      auth_token_path: /etc/glia/token     # or auth_token: "..."
      callbacks: auto                      # auto | all | [names]
      timeout: {default: 6, check_event_for_spam: 2}   # seconds; or one number
      fail_open: {user_may_create_room: true}          # bool, or per callback (+ default)
      web_resources: true
      web_resource_paths: [/_synapse/client/demo/hello]  # used when glia is down at start-up
      login_types: {org.example.token: [token]}          # auth checker fields per login type
      media_bytes: 524288                  # bytes of a media file sent to check_media_file_for_spam
      startup_timeout: 2                   # seconds for the start-up discovery request
      discovery_retry_interval: 10         # seconds between retries while glia is down
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from synapse.module_api.errors import ConfigError

from glia_synapse.catalogue import BACKGROUND_CONTROLLER, BY_NAME, PRESENCE_PAIR

AUTO, ALL = "auto", "all"
DEFAULT_TIMEOUT = 6.0
#: Base64 makes these 512 KiB about 683 KiB of request, under glia's default 1 MiB body limit.
DEFAULT_MEDIA_BYTES = 512 * 1024
KNOWN_KEYS = {
    "glia_url",
    "auth_token",
    "auth_token_path",
    "callbacks",
    "timeout",
    "fail_open",
    "web_resources",
    "web_resource_paths",
    "login_types",
    "media_bytes",
    "startup_timeout",
    "discovery_retry_interval",
}


@dataclass(frozen=True)
class BridgeConfig:
    """The checked config."""

    glia_url: str
    auth_token: str | None = None
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
    login_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: How much of a media file `check_media_file_for_spam` sends (0: none).
    media_bytes: int = DEFAULT_MEDIA_BYTES
    startup_timeout: float = 2.0
    discovery_retry_interval: float = 10.0

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
        glia_url=_url(raw.get("glia_url")),
        auth_token=_token(raw),
        callbacks=_callbacks(raw.get("callbacks", AUTO)),
        default_timeout=default_timeout if default_timeout is not None else DEFAULT_TIMEOUT,
        timeouts=timeouts,
        fail_open=fail_open,
        web_resources=_boolean(raw.get("web_resources", True), ("web_resources",)),
        web_resource_paths=tuple(
            _web_path(p, ("web_resource_paths", str(i)))
            for i, p in enumerate(_list(raw.get("web_resource_paths", []), ("web_resource_paths",)))
        ),
        login_types=_login_types(raw.get("login_types", {})),
        media_bytes=_byte_count(raw.get("media_bytes", DEFAULT_MEDIA_BYTES), ("media_bytes",)),
        startup_timeout=_positive_number(raw.get("startup_timeout", 2), ("startup_timeout",)),
        discovery_retry_interval=_positive_number(
            raw.get("discovery_retry_interval", 10), ("discovery_retry_interval",)
        ),
    )


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError("required: glia's base URL, e.g. http://127.0.0.1:8787", ("glia_url",))
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{value!r} is not an http(s) URL", ("glia_url",))
    if parts.query or parts.fragment:
        raise ConfigError(f"{value!r}: no query or fragment allowed", ("glia_url",))
    return value.rstrip("/")


def _token(raw: Mapping[str, Any]) -> str | None:
    token, path = raw.get("auth_token"), raw.get("auth_token_path")
    if token is not None and path is not None:
        raise ConfigError("give auth_token or auth_token_path, not both", ("auth_token_path",))
    if token is not None:
        if not isinstance(token, str) or not token.strip():
            raise ConfigError("expected a non-empty string", ("auth_token",))
        return token.strip()
    if path is None:
        return None
    if not isinstance(path, str):
        raise ConfigError("expected a file path", ("auth_token_path",))
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}", ("auth_token_path",)) from e
    if not token:
        raise ConfigError(f"{path} is empty", ("auth_token_path",))
    return token


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
