"""The embedded module's `config:` block, checked once when Synapse parses its config.

```yaml
modules:
  - module: glia_embedded.GliaEmbedded
    config:
      config_file: /etc/glia/glia.yaml   # required: glia's own config, as `glia serve` reads it
      http: false                        # also serve glia's HTTP API (/metrics, /health) on its `listen`
      fail_open: {user_may_create_room: true}   # bool, or per callback (+ default), as the bridge's
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synapse.module_api.errors import ConfigError

from glia_synapse.catalogue import BY_NAME

KNOWN_KEYS = {"config_file", "http", "fail_open"}


@dataclass(frozen=True)
class EmbeddedConfig:
    """The module's settings."""

    #: glia's config file.
    config_file: str
    #: Whether glia's HTTP API is served too, on the glia config's `listen`.
    http: bool = False
    #: Failure mode per callback when glia cannot decide (the catalogue's default otherwise).
    fail_open: Mapping[str, bool] = field(default_factory=dict)

    def fails_open(self, callback: str) -> bool:
        """Whether `callback` answers "no opinion" when glia cannot decide (else raises)."""
        spec = BY_NAME[callback]
        if not spec.may_fail_open:
            return False
        return self.fail_open.get(callback, self.fail_open.get("default", spec.fail_open))


def parse_config(raw: Mapping[str, Any]) -> EmbeddedConfig:
    """Checks the module's `config:` block."""
    if not isinstance(raw, Mapping):
        raise ConfigError("the glia_embedded config must be a mapping")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"unknown keys {unknown}; known: {sorted(KNOWN_KEYS)}")
    path = raw.get("config_file")
    if not isinstance(path, str) or not path:
        raise ConfigError("config_file is required: the path of glia's config", ("config_file",))
    http = raw.get("http", False)
    if not isinstance(http, bool):
        raise ConfigError("http must be true or false", ("http",))
    return EmbeddedConfig(path, http, _fail_open(raw.get("fail_open", {})))


def _fail_open(raw: Any) -> dict[str, bool]:
    if isinstance(raw, bool):
        return {"default": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError("fail_open must be true, false or a mapping of callback to bool", ("fail_open",))
    for name, value in raw.items():
        if name != "default" and name not in BY_NAME:
            raise ConfigError(f"unknown callback {name!r}", ("fail_open", str(name)))
        if not isinstance(value, bool):
            raise ConfigError("must be true or false", ("fail_open", str(name)))
    return dict(raw)
