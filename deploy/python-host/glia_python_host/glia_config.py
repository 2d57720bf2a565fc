"""The parts of glia's config file a standalone host reads: the NATS bus, the `python:`
settings, and the module entries it serves. glia itself checks the whole file (`glia
check-config`); this reads what it needs and says clearly what is missing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from glia_python_host.settings import HomeserverSettings, SettingsError
from glia_synapse import files

#: glia's defaults for what sizes a module's admission (`max_in_flight` + `restart.stash`).
DEFAULT_MAX_IN_FLIGHT = 1024
DEFAULT_STASH = 1000


class GliaConfigError(ValueError):
    """glia's config cannot serve what was asked."""


@dataclass(frozen=True)
class ModuleEntry:
    """A Python module entry of glia's `modules:` list."""

    name: str
    module: str
    config: Mapping[str, Any]
    max_in_flight: int
    stash: int


@dataclass(frozen=True)
class NatsSettings:
    """glia's `bus: {type: nats, ...}`: how to reach NATS."""

    servers: list[str]
    options: dict[str, Any]


@dataclass(frozen=True)
class HostConfig:
    """What a standalone host serves, and how."""

    nats: NatsSettings
    homeserver: HomeserverSettings
    modules: list[ModuleEntry]


def read_secret(settings: Mapping[str, Any], key: str, where: str) -> str | None:
    """`key` inline, or read from the file `key_file`."""
    if settings.get(key) is not None:
        return str(settings[key])
    path = settings.get(f"{key}_file")
    if path is None:
        return None
    try:
        return files.read_text(path).strip()
    except OSError as e:
        raise GliaConfigError(f"{where}.{key}_file: cannot read {path}: {e.strerror}") from e


def homeserver_settings(python: Mapping[str, Any]) -> HomeserverSettings:
    """The `python:` section as the settings glia sends a child host."""
    channel = python.get("module_api")
    raw = dict(python)
    if isinstance(channel, Mapping):
        raw["module_api"] = {"url": channel.get("url"), "secret": read_secret(channel, "secret", "python.module_api")}
    try:
        return HomeserverSettings.from_json(raw)
    except SettingsError as e:
        raise GliaConfigError(str(e)) from e


def nats_settings(bus: Any) -> NatsSettings:
    """glia's NATS settings as nats-py's `connect` options."""
    if not isinstance(bus, Mapping) or bus.get("type") != "nats":
        raise GliaConfigError(
            "bus: a standalone host serves over NATS; glia's config needs `bus: {type: nats, url: ...}`"
        )
    url = bus.get("url")
    servers = [u.strip() for u in url.split(",")] if isinstance(url, str) else [str(u) for u in url or ()]
    if not servers:
        raise GliaConfigError("bus.url: no NATS server")
    options: dict[str, Any] = {}
    for key in ("token", "user", "password"):
        if bus.get(key) is not None:
            options[key] = str(bus[key])
    if bus.get("nkey_seed") is not None:
        options["nkeys_seed_str"] = str(bus["nkey_seed"])
    if bus.get("credentials_file") is not None:
        options["user_credentials"] = str(bus["credentials_file"])
    tls = bus.get("tls")
    if isinstance(tls, Mapping):
        import ssl

        context = ssl.create_default_context(cafile=tls.get("ca_file"))
        if tls.get("cert_file"):
            context.load_cert_chain(tls["cert_file"], tls.get("key_file"))
        options["tls"] = context
    return NatsSettings(servers, options)


def load(path: str, names: list[str]) -> HostConfig:
    """The host's part of glia's config at `path`, for the Python modules `names` (all the
    `placement: nats` Python modules when empty)."""
    import yaml

    try:
        raw = yaml.safe_load(files.read_text(path, files.MAX_CONFIG_FILE)) or {}
    except (OSError, yaml.YAMLError) as e:
        raise GliaConfigError(f"{path}: {e}") from e
    defaults = raw.get("defaults") or {}
    entries = []
    for item in raw.get("modules") or ():
        module = item.get("module") if isinstance(item, Mapping) else None
        if not isinstance(module, str) or "." not in module:
            continue
        name = str(item.get("name") or module)
        if names and name not in names:
            continue
        if not names and item.get("placement") != "nats":
            continue
        restart = {**(defaults.get("restart") or {}), **(item.get("restart") or {})}
        entries.append(
            ModuleEntry(
                name=name,
                module=module,
                config=item.get("config") or {},
                max_in_flight=int(item.get("max_in_flight") or defaults.get("max_in_flight") or DEFAULT_MAX_IN_FLIGHT),
                stash=int(restart.get("stash", DEFAULT_STASH)),
            )
        )
    missing = sorted(set(names) - {e.name for e in entries})
    if missing:
        raise GliaConfigError(f"{path}: no Python module entry named {', '.join(missing)}")
    if not entries:
        raise GliaConfigError(f"{path}: no Python module with `placement: nats` to serve")
    return HostConfig(nats_settings(raw.get("bus")), homeserver_settings(raw.get("python") or {}), entries)
