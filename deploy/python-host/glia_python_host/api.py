"""The `ModuleApi` a hosted module gets: Synapse's own class, without a homeserver behind it.

`HostModuleApi` subclasses Synapse's `ModuleApi` and skips its constructor (which needs a whole
`HomeServer`). What remains works as in Synapse:

- the `register_*` methods are Synapse's own, delegating to recorders (`registry`);
- which member is given how is the table in `api_table` (also published as docs/module-api.md);
- the properties (`server_name`, `public_baseurl`, `worker_name`, `email_app_name`, ...) read a
  small stand-in homeserver built from glia's `python:` settings;
- `http_client` is a real `SimpleHttpClient`; the clock (`sleep`, `looping_background_call`,
  `delayed_background_call`) is Synapse's `Clock` on the shared reactor;
  `run_as_background_process`, `get_qualified_user_id` and `is_mine` are Synapse's own code;
- the data methods that ask the homeserver (`get_room_state`, `check_user_exists`,
  `update_room_membership`, ...) go through the channel to the bridge (`channel`), which calls
  Synapse's real `ModuleApi`;
- the refused members (`run_db_interaction`, `get_user_by_req`, ...) and private internals
  (`api._store`, `api._hs.get_*()`, ...) raise `NotAvailableOutOfProcess` naming what was
  called, at the call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from synapse.module_api import AccountDataManager, ModuleApi, PublicRoomListManager

from glia_python_host import api_table, results
from glia_python_host.channel import Channel, NotAvailableOutOfProcess
from glia_python_host.registry import Callbacks, CategoryRecorder, Registry
from glia_python_host.settings import HomeserverSettings
from glia_synapse.module_api_calls import CALLS


class Unavailable:
    """A Synapse internal that does not exist out of process: reading its attributes gives
    more of the same, calling it raises `NotAvailableOutOfProcess` naming it."""

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> Unavailable:
        if name.startswith("__"):
            raise AttributeError(name)
        return Unavailable(f"{self._path}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotAvailableOutOfProcess(
            f"{self._path}() is not available to a module hosted by glia: it needs Synapse's "
            "process (its database or internal handlers)"
        )

    def __repr__(self) -> str:
        return f"<{self._path}: not available out of process>"


class _Database:
    """One of `hs.get_datastores().databases`: its background updater records the
    background-update controller."""

    def __init__(self, recorder: CategoryRecorder) -> None:
        self.updates = recorder


class _DataStores:
    def __init__(self, recorder: CategoryRecorder) -> None:
        self.databases = [_Database(recorder)]
        self.main = Unavailable("api._hs.get_datastores().main")


class HomeServer:
    """The parts of Synapse's `HomeServer` the `ModuleApi`'s own code and `SimpleHttpClient`
    read; any other attribute is `Unavailable`."""

    def __init__(self, settings: HomeserverSettings, registry: Registry, reactor: Any, clock: Any) -> None:
        from synapse.config._base import Config
        from synapse.config.server import parse_proxy_config
        from synapse.util import SYNAPSE_VERSION

        self.hostname = settings.server_name
        self.version_string = f"Synapse/{SYNAPSE_VERSION}"
        self._reactor = reactor
        self._clock = clock
        self._recorder = CategoryRecorder(registry)
        self._registry = registry
        self.config = SimpleNamespace(
            server=SimpleNamespace(
                public_baseurl=settings.public_baseurl,
                custom_template_directory=None,
                user_agent_suffix=None,
                proxy_config=parse_proxy_config({}),
            ),
            worker=SimpleNamespace(
                worker_name=settings.worker_name,
                worker_app=None,
                run_background_tasks=True,
                instance_name=settings.worker_name or "master",
            ),
            email=SimpleNamespace(email_app_name=settings.email_app_name),
            caches=SimpleNamespace(global_factor=0.5),
            tls=SimpleNamespace(use_insecure_ssl_client_just_for_testing_do_not_use=False),
            mas=SimpleNamespace(enabled=False),
        )
        # `ModuleApi.read_templates`: Synapse's own loader, which reads `public_baseurl` from
        # the root config it is given and Synapse's default template directory.
        self.config.server.read_templates = Config(self.config).read_templates  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return Unavailable(f"api._hs.{name}")

    def get_reactor(self) -> Any:
        return self._reactor

    def get_clock(self) -> Any:
        return self._clock

    def get_http_client_context_factory(self) -> Any:
        from synapse.crypto.context_factory import RegularPolicyForHTTPS

        return RegularPolicyForHTTPS()

    def get_datastores(self) -> _DataStores:
        return _DataStores(self._recorder)

    def is_mine(self, domain_specific_string: Any) -> bool:
        return bool(domain_specific_string.domain == self.hostname)

    def is_mine_id(self, string: str) -> bool:
        return string.split(":", 1)[-1] == self.hostname

    def is_mine_server_name(self, server_name: str) -> bool:
        return server_name == self.hostname

    def register_module_web_resource(self, path: str, resource: Any) -> None:
        self._registry.add_web_resource(path, resource)

    def run_as_background_process(self, desc: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from synapse.metrics.background_process_metrics import run_as_background_process

        return run_as_background_process(desc, self.hostname, func, *args, **kwargs)  # type: ignore[untracked-background-process]


#: `ModuleApi` members that work out of process as Synapse wrote them (on `HomeServer` above),
#: or as `HostModuleApi` overrides them: the table's `host` entries.
LOCAL = api_table.names(api_table.HOST)


class _Manager:
    """`public_room_list_manager` / `account_data_manager`: their methods go to the bridge."""

    def __init__(self, api: HostModuleApi, prefix: str, synapse_class: type) -> None:
        self._api = api
        self._prefix = prefix
        self._class = synapse_class

    def __getattr__(self, name: str) -> Any:
        full = f"{self._prefix}.{name}"
        if full not in CALLS:
            return Unavailable(f"api.{full}")
        function = getattr(self._class, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._api._call_homeserver(full, _named_args(function, (None, *args), kwargs))

        return call


class HostModuleApi(ModuleApi):
    """Synapse's `ModuleApi`, in a host process; see the module's docstring."""

    def __init__(self, settings: HomeserverSettings, registry: Registry, reactor: Any) -> None:
        # Deliberately not ModuleApi.__init__: it needs a whole HomeServer.
        from synapse.util.clock import Clock

        self._clock = Clock(reactor, settings.server_name)
        self._hs = HomeServer(settings, registry, reactor, self._clock)
        self._server_name = settings.server_name
        self._callbacks = Callbacks(registry)
        recorder = CategoryRecorder(registry)
        for registry_holder in (
            "_presence_router",
            "_password_auth_provider",
            "_account_data_handler",
            "_event_serializer",
        ):
            setattr(self, registry_holder, recorder)
        self._auth_delegation_enabled = False
        self.custom_template_dir = None
        self._public_room_list_manager = _Manager(self, "public_room_list_manager", PublicRoomListManager)
        self._account_data_manager = _Manager(self, "account_data_manager", AccountDataManager)
        self._settings = settings
        self._http_client_instance: Any = None
        for internal in (
            "_store",
            "_storage_controllers",
            "_auth",
            "_auth_handler",
            "_presence_stream",
            "_state",
            "_registration_handler",
            "_send_email_handler",
            "_push_rules_handler",
            "_pusherpool",
            "_device_handler",
        ):
            setattr(self, internal, Unavailable(f"api.{internal}"))

    @property  # type: ignore[override]
    def _http_client(self) -> Any:
        """A real `SimpleHttpClient`, made on first use (after the reactor is installed)."""
        if self._http_client_instance is None:
            from synapse.http.client import SimpleHttpClient

            self._http_client_instance = SimpleHttpClient(self._hs)  # type: ignore[arg-type]
        return self._http_client_instance

    @property
    def channel(self) -> Channel:
        """The `ModuleApi` channel to the bridge."""
        return Channel(self._settings.module_api, self._http_client)

    async def _call_homeserver(self, name: str, args: dict[str, Any]) -> Any:
        """Calls `name` in the homeserver through the bridge; rebuilds Synapse's result."""
        return results.decode(CALLS[name], await self.channel.call(name, args))

    def register_cached_function(self, cached_func: Any) -> None:
        """Caches stay in this process: there is no other to invalidate them in."""

    async def invalidate_cache(self, cached_func: Any, keys: tuple[Any, ...]) -> None:
        """Invalidates this process's cache only (Synapse also tells its other workers)."""
        cached_func.invalidate(keys)


def _named_args(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments by the parameter names of Synapse's own method (`args` starts with
    the instance, which is left out)."""
    bound = inspect.signature(function).bind(*args, **kwargs)
    return dict(list(bound.arguments.items())[1:])


def _remote(name: str) -> Callable[..., Any]:
    """A `ModuleApi` method answered by the homeserver through the bridge, returning what
    Synapse's own returns (a coroutine, or a Deferred where Synapse returns one)."""
    synapse_method = getattr(ModuleApi, name)
    returns_deferred = not inspect.iscoroutinefunction(synapse_method)

    async def call_async(self: HostModuleApi, *args: Any, **kwargs: Any) -> Any:
        return await self._call_homeserver(name, _named_args(synapse_method, (self, *args), kwargs))

    def call_deferred(self: HostModuleApi, *args: Any, **kwargs: Any) -> Any:
        from twisted.internet import defer

        return defer.ensureDeferred(call_async(self, *args, **kwargs))

    method = call_deferred if returns_deferred else call_async
    method.__name__ = name
    method.__doc__ = f"`ModuleApi.{name}`, answered by the homeserver through the bridge."
    return method


def _unavailable(name: str) -> Callable[..., Any]:
    entry = api_table.TABLE.get(name)
    reason = entry.why if entry is not None else "this Synapse's ModuleApi is newer than glia's table of it"

    def method(self: HostModuleApi, *args: Any, **kwargs: Any) -> Any:
        raise NotAvailableOutOfProcess(
            f"ModuleApi.{name} is not available to a module hosted by glia: {reason} (see docs/module-api.md)"
        )

    method.__name__ = name
    return method


def _fill_in() -> None:
    """Gives `HostModuleApi` a remote method for every call the bridge serves, and a method
    raising `NotAvailableOutOfProcess` for every public `ModuleApi` method the table refuses
    (or, from a newer Synapse, does not list)."""
    for name, value in vars(ModuleApi).items():
        if name.startswith("_") or name in LOCAL or name in vars(HostModuleApi):
            continue
        if name in CALLS:
            setattr(HostModuleApi, name, _remote(name))
        elif isinstance(value, property):
            setattr(HostModuleApi, name, property(_unavailable(name)))
        elif callable(value):
            setattr(HostModuleApi, name, _unavailable(name))


_fill_in()
