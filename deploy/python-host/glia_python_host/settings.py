"""What the host knows of the homeserver: the settings glia's config gives it (`python:`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """A `python:` setting is missing or wrong."""


@dataclass(frozen=True)
class ModuleApiChannel:
    """Where the bridge serves Synapse's `ModuleApi` to hosts, and the secret it wants."""

    url: str
    secret: str


@dataclass(frozen=True)
class HomeserverSettings:
    """The homeserver a module believes it runs in (`ModuleApi.server_name` and friends)."""

    server_name: str
    public_baseurl: str
    worker_name: str | None = None
    email_app_name: str = "Matrix"
    module_api: ModuleApiChannel | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> HomeserverSettings:
        """Reads the settings glia sends a child host (and the standalone host reads from
        glia's config): `server_name`, `public_baseurl`, `worker_name`, `email_app_name`,
        `module_api: {url, secret}`."""
        server_name = raw.get("server_name")
        if not isinstance(server_name, str) or not server_name:
            raise SettingsError("python.server_name: the homeserver's server name is required")
        public_baseurl = raw.get("public_baseurl") or f"https://{server_name}/"
        if not isinstance(public_baseurl, str):
            raise SettingsError("python.public_baseurl: expected a URL")
        channel = raw.get("module_api")
        module_api = None
        if channel is not None:
            url, secret = channel.get("url"), channel.get("secret")
            if not isinstance(url, str) or not isinstance(secret, str) or not secret:
                raise SettingsError("python.module_api: expected {url, secret}")
            module_api = ModuleApiChannel(url.rstrip("/"), secret)
        worker_name = raw.get("worker_name")
        return cls(
            server_name=server_name,
            public_baseurl=public_baseurl if public_baseurl.endswith("/") else public_baseurl + "/",
            worker_name=worker_name if isinstance(worker_name, str) else None,
            email_app_name=str(raw.get("email_app_name") or "Matrix"),
            module_api=module_api,
        )
