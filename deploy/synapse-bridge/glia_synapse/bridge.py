"""`GliaBridge`: the Synapse module.

At construction it asks glia which callbacks, login types and web resources its modules use
(`GET /_glia/v1/modules`, a short blocking request), registers the selected callbacks with
Synapse, and the web resources (`web`). When glia cannot be asked then, or may have changed
since, it asks again in the background (`discovery.Rediscovery`); a registered callback that
no glia module serves is then answered at once, as Synapse answers with no module for it
(`GliaBridge.forward`). Every callback goes through one generic path,
`GliaBridge.forward`: arguments encoded by name (`convert`), POSTed to glia (`client`), the
reply read by the callback's reply kind (`replies`). When glia decides that the request fails,
the bridge raises as a module would; only when glia cannot decide at all is the callback's
failure mode used (`config.BridgeConfig.fails_open`).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from synapse.module_api.errors import ConfigError
from twisted.internet.error import CannotListenError

from glia_synapse import module_api_server, once
from glia_synapse.catalogue import (
    BACKGROUND_CONTROLLER,
    BACKGROUND_UPDATES,
    BY_NAME,
    CALLBACKS,
    CHECK_AUTH,
    EVERY,
    POST_LOGIN,
    REGISTER_METHODS,
    CallbackSpec,
    bind_post_login,
)
from glia_synapse.client import GliaClient, fetch_modules_blocking
from glia_synapse.config import AUTO, ONCE, SYNAPSE, BridgeConfig, parse_config
from glia_synapse.convert import encode_args, read_media_file
from glia_synapse.discovery import Discovery, Rediscovery
from glia_synapse.errors import GliaCallbackFailed, GliaFailure
from glia_synapse.events_in_flight import IN_FLIGHT
from glia_synapse.replies import check_error
from glia_synapse.reply_cache import Generations, ReplyCache
from glia_synapse.synapse_transport import SynapseHttpPool
from glia_synapse.tracing import new_request_id
from glia_synapse.web import GliaWebResource, WebRoutes

logger = logging.getLogger(__name__)

Callback = Callable[..., Awaitable[Any]]

__all__ = ["Discovery", "GliaBridge", "callback_for", "forwarding_rules", "select_callbacks", "select_login_types"]

#: Seconds before the first retry to listen for the ModuleApi channel, doubled after each
#: failure up to `MODULE_API_RETRY_MAX`.
MODULE_API_RETRY_FIRST = 5.0
MODULE_API_RETRY_MAX = 30.0


def select_callbacks(config: BridgeConfig, discovery: Discovery | None) -> list[CallbackSpec]:
    """The callbacks to register (auth checkers aside).

    `auto`: those glia's modules use, or, when glia could not be asked, every callback but
    those registered only when served (the legacy account-validity slots, the
    background-update controller, `add_field_to_unsigned`). `all`: every callback but those.
    A list: exactly the listed callbacks.
    """
    if isinstance(config.callbacks, tuple):
        return [spec for spec in CALLBACKS if spec.name in config.callbacks]
    if config.callbacks == AUTO and discovery is not None:
        return [spec for spec in CALLBACKS if spec.name in discovery.callbacks]
    return [spec for spec in CALLBACKS if not spec.only_when_served]


def select_login_types(
    config: BridgeConfig, discovery: Discovery | None
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """The auth checkers to register (login type to fields), and the login types glia
    serves whose fields are unknown (not listed in `login_types`)."""
    if isinstance(config.callbacks, tuple) and CHECK_AUTH.name not in config.callbacks:
        return {}, []
    checkers = dict(config.login_types)
    unknown = []
    for login_type, fields in (discovery.login_types if discovery else {}).items():
        if login_type in checkers:
            continue
        if fields is None:
            unknown.append(login_type)
        else:
            checkers[login_type] = fields
    return checkers, unknown


def make_client(config: BridgeConfig, api: Any) -> GliaClient:
    """The client for the configured coordinators and transport."""
    if config.transport == SYNAPSE:
        try:
            pools = [SynapseHttpPool(address, api.http_client) for address in config.glia_urls]
        except ValueError as e:
            raise ConfigError(str(e), ("transport",)) from e
        return GliaClient(pools, config.auth_token, attempt_timeout=config.attempt_timeout)
    return GliaClient.lean(config.glia_urls, config.auth_token, config.connect_timeout, config.attempt_timeout)


def forwarding_rules(config: BridgeConfig) -> dict[str, once.Rule]:
    """The callbacks Synapse invokes in every process, each with the rule saying whether this
    process forwards an invocation: all of them with `notifications: once`, none with
    `every_process`."""
    if config.notifications != ONCE:
        return {}
    return {spec.name: once.FORWARDED_BY[spec.name] for spec in CALLBACKS if spec.invoked_in == EVERY}


class FailureLog:
    """Logs glia failures without flooding the log: the first failure of each callback,
    then at most one line every `interval` seconds with the count in between."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def failed(self, callback: str, failure: GliaFailure, request_id: str, outcome: str) -> None:
        """Records one failure."""
        now = time.monotonic()
        if now - self._last.get(callback, -self._interval) < self._interval:
            self._suppressed[callback] = self._suppressed.get(callback, 0) + 1
            return
        self._last[callback] = now
        more = self._suppressed.pop(callback, 0)
        logger.warning(
            "glia could not decide %s (%s): %s; %s%s",
            callback,
            request_id,
            failure,
            outcome,
            f" ({more} more failures of {callback} since the last report)" if more else "",
        )


#: Synapse's defaults for the `background_updates` settings, when its config cannot be read.
SYNAPSE_BACKGROUND_DEFAULTS = {"update_duration_ms": 100, "default_batch_size": 100, "min_batch_size": 1}


class _Entered:
    """`on_update`'s async context manager: entering it asks glia for the batch's target
    duration; leaving it does nothing (Synapse's own manager only sleeps on entry)."""

    def __init__(self, ask: Callable[[], Awaitable[Any]]) -> None:
        self._ask = ask

    async def __aenter__(self) -> Any:
        return await self._ask()

    async def __aexit__(self, *exc: object) -> bool:
        return False


def callback_for(
    spec: CallbackSpec, forward: Callable[[CallbackSpec, Mapping[str, Any]], Awaitable[Any]], owner: str
) -> Callback:
    """Synapse's callback for `spec`, calling `forward(spec, arguments by name)`: an async
    function with Synapse's parameters (Synapse counts them for `user_may_create_room` and
    `check_username_for_spam`), or, for `on_update`, a plain function returning an async
    context manager whose entry calls `forward`. Shared with the embedded placement
    (`glia_embedded`), so both present the same callbacks to Synapse."""
    signature = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in spec.params]
    )

    names = tuple(spec.params)

    async def callback(*args: Any, **kwargs: Any) -> Any:
        # Synapse passes every argument by position: naming them needs no `bind`, which
        # costs more than the rest of the bridge's own work on a call.
        if not kwargs and len(args) == len(names):
            return await forward(spec, dict(zip(names, args, strict=True)))
        return await forward(spec, signature.bind(*args, **kwargs).arguments)

    def context_manager(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        return _Entered(lambda: forward(spec, bound.arguments))

    made: Any = context_manager if spec.context_manager else callback
    made.__signature__ = signature
    made.__name__ = spec.name
    made.__qualname__ = f"{owner}.{spec.name}"
    return made  # type: ignore[no-any-return]


class GliaBridge:
    """A Synapse module that hands every module callback to glia."""

    parse_config = staticmethod(parse_config)

    def __init__(self, config: BridgeConfig, api: Any) -> None:
        self._config = config
        self._api = api
        self._client = make_client(config, api)
        self._failures = FailureLog()
        #: The generation of glia's routing its responses name, which lasting replies need.
        self._generations = Generations()
        #: Replies reused while glia says they hold, per callback that has such replies.
        self._caches = {spec.name: ReplyCache(self._generations) for spec in CALLBACKS if spec.cache_key is not None}
        self._login_types: set[str] = set()
        #: The callbacks registered with Synapse (auth checkers aside), and those it refused.
        self._registered: frozenset[str] = frozenset()
        self._refused: frozenset[str] = frozenset()
        #: Those of them that no glia module serves, by glia's last listing (`callbacks:
        #: auto` only): answered at once, as Synapse answers with no module for them.
        self._unserved: frozenset[str] = frozenset()
        #: Whether glia's listing was read yet.
        self._listed = False
        #: What was last logged about glia's listing, to log only its changes.
        self._reported: dict[str, frozenset[str]] = {}
        #: The web resources glia listed last, which every registered web resource consults.
        self._web_routes = WebRoutes()
        #: The paths registered at start-up outside the prefixes (glia's, or configured).
        self._web_paths: tuple[str, ...] = ()
        self._rediscovery = Rediscovery(
            api,
            self._client.get_modules,
            self._apply_discovery,
            lambda: self._generations.current,
            config.startup_timeout,
            config.discovery_retry_interval,
        )
        self._module_api_port: Any = None
        #: This process's instance name, and the rule of each callback Synapse invokes in
        #: every process by which this process forwards it or not (`notifications: once`).
        self._instance = once.instance_name(api.worker_name)
        self._forwarded_by = forwarding_rules(config)
        discovery = self._discover_at_startup()
        specs = select_callbacks(config, discovery)
        self._register_callbacks(specs)
        self._register_auth_checkers(discovery)
        registered_web = self._register_web_resources(discovery)
        logger.info(
            "glia bridge -> %s (instance %s): %d callbacks (%s; fail open: %s; notifications: %s), login types %s, "
            "web resources %s (served at %s)",
            config.glia_url,
            self._instance,
            len(specs),
            ", ".join(s.name for s in specs) or "none",
            ", ".join(s.name for s in specs if config.fails_open(s.name)) or "none",
            config.notifications,
            sorted(self._login_types) or "none",
            list(discovery.web_paths) if discovery is not None else "not known yet",
            [f"{p}/..." if p in config.web_resource_prefixes else p for p in registered_web] or "none",
        )
        if discovery is None:
            self._rediscovery.start(config.discovery_retry_interval)
        else:
            self._apply_discovery(discovery, at_startup=True)
        self._module_api_port = self._serve_module_api()

    def _serve_module_api(self) -> Any:
        """Serves the `ModuleApi` to glia's Python hosts, when configured, from the main
        process only (every worker runs the bridge; one listener is enough).

        When its address cannot be bound (taken, or not this host's), Synapse starts anyway,
        without the channel, and the bridge tries again in the background until it listens.
        """
        listener = self._config.module_api
        if listener is None:
            return None
        if self._api.worker_name is not None:
            logger.info("glia bridge: the ModuleApi channel is served by the main process, not this worker")
            return None
        try:
            return module_api_server.listen(self._api, listener.host, listener.port, listener.secret)
        except CannotListenError as e:
            logger.error(
                "glia bridge: cannot listen on %s:%d for the ModuleApi channel to glia's Python hosts (%s). "
                "Synapse starts without it: until it listens, the ModuleApi calls of the modules glia hosts "
                "fail (or reach whatever holds that address). Trying again in the background every %g to %g s",
                listener.host,
                listener.port,
                e.socketError,
                MODULE_API_RETRY_FIRST,
                MODULE_API_RETRY_MAX,
            )
            self._api.run_as_background_process("glia_bridge_module_api_listen", self._listen_later)
            return None

    async def _listen_later(self) -> None:
        """Tries to listen for the ModuleApi channel until it works, backing off."""
        listener = self._config.module_api
        assert listener is not None
        delay = MODULE_API_RETRY_FIRST
        failures = 1
        while True:
            await self._api.sleep(delay)
            try:
                self._module_api_port = module_api_server.listen(
                    self._api, listener.host, listener.port, listener.secret
                )
            except CannotListenError as e:
                failures += 1
                delay = min(delay * 2, MODULE_API_RETRY_MAX)
                logger.error(
                    "glia bridge: still cannot listen on %s:%d for the ModuleApi channel (%s; %d attempts); "
                    "hosted modules' ModuleApi calls fail until it does. Trying again in %g s",
                    listener.host,
                    listener.port,
                    e.socketError,
                    failures,
                    delay,
                )
                continue
            logger.warning(
                "glia bridge: the ModuleApi channel listens on %s:%d now, after %d failed attempts",
                listener.host,
                listener.port,
                failures,
            )
            return

    # -- the generic forwarding path -------------------------------------------------

    async def forward(self, spec: CallbackSpec, args: Mapping[str, Any]) -> Any:
        """Asks glia to decide one callback invocation; returns what Synapse expects.

        Raises what glia decided the module raised (a `SynapseError`, or `GliaModuleFailed`),
        and, failing closed, `GliaCallbackFailed` when glia could not decide. While it waits,
        the callback's event is held for the ModuleApi channel (`events_in_flight`), where this
        process serves it.

        A callback glia's last listing says no module serves (`callbacks: auto`) is not
        asked, nor is one that another process forwards (`once`): it returns what Synapse
        returns with no module for it.
        """
        if spec.name in self._unserved:
            return self._no_module(spec)
        rule = self._forwarded_by.get(spec.name)
        if rule is not None and not rule(args, self._instance):
            # Another process forwards this occurrence (see `once`).
            return self._no_module(spec)
        cache = self._caches.get(spec.name)
        if cache is not None:
            cached = cache.get(args[spec.cache_key])  # type: ignore[index]
            if cached is not None:
                return cached[0]
        event = args.get("event") if self._module_api_port is not None else None
        held = IN_FLIGHT.hold(event) if event is not None else None
        try:
            return bind_post_login(await self._forward(spec, args, cache), self.forward)
        finally:
            if held is not None:
                IN_FLIGHT.release(held, event)

    async def _forward(self, spec: CallbackSpec, args: Mapping[str, Any], cache: ReplyCache | None) -> Any:
        """`forward`, past the reply cache."""
        request_id = new_request_id()
        started = time.perf_counter()
        try:
            body = self._encode(spec, args)
            if spec.file_param is not None and self._config.media_bytes > 0:
                body["file"] = await self._read_file(args[spec.file_param])
            reply, generation = await self._client.call(
                spec.name, body, request_id, self._config.timeout_for(spec.name), retry_safe=not spec.notification
            )
            if generation is not None:
                self._generations.seen(generation)
                self._rediscovery.heard(generation)
            result = spec.reply.decode(check_error(reply), args)
            if cache is not None:
                key = args[spec.cache_key]  # type: ignore[index]
                cache.put(key, result, reply.get("valid_until_ms"), reply.get("generation"))
        except GliaFailure as failure:
            result = self._resolve_failure(spec, failure, request_id)
        else:
            if logger.isEnabledFor(logging.DEBUG):
                elapsed_ms = (time.perf_counter() - started) * 1000
                logger.debug("glia decided %s (%s) in %.2f ms: %s", spec.name, request_id, elapsed_ms, reply)
        if result is None and spec.synapse_setting is not None:
            return self._synapse_setting(spec.synapse_setting)
        return result

    def _no_module(self, spec: CallbackSpec) -> Any:
        """What Synapse gets for `spec` with no module registering it: the callback's "no
        opinion" value (`NOT_SPAM`, `(True, None)`, `None`, ...), or Synapse's own setting."""
        result = spec.reply.fail_open()
        if result is None and spec.synapse_setting is not None:
            return self._synapse_setting(spec.synapse_setting)
        return result

    def _synapse_setting(self, name: str) -> Any:
        """Synapse's own value of `background_updates.<name>`, for when no module answers."""
        settings = getattr(getattr(getattr(self._api, "_hs", None), "config", None), "background_updates", None)
        return getattr(settings, name, SYNAPSE_BACKGROUND_DEFAULTS[name])

    async def _read_file(self, wrapper: Any) -> dict[str, Any]:
        try:
            return await read_media_file(wrapper, self._config.media_bytes)
        except OSError as e:
            raise GliaFailure(f"cannot read the media file: {e}", kind="bad_request") from e

    @staticmethod
    def _encode(spec: CallbackSpec, args: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return encode_args(spec.params, args, spec.skip)
        except Exception as e:
            raise GliaFailure(f"cannot encode the arguments: {type(e).__name__}: {e}", kind="bad_request") from e

    def _resolve_failure(self, spec: CallbackSpec, failure: GliaFailure, request_id: str) -> Any:
        if self._config.fails_open(spec.name):
            self._failures.failed(spec.name, failure, request_id, "failing open")
            return spec.reply.fail_open()
        self._failures.failed(spec.name, failure, request_id, "failing closed")
        raise GliaCallbackFailed(f"glia could not decide {spec.name}: {failure}") from failure

    def make_callback(self, spec: CallbackSpec) -> Callback:
        """Synapse's callback for `spec`, forwarding to glia (see `callback_for`)."""
        return callback_for(spec, self.forward, type(self).__name__)

    # -- start-up ---------------------------------------------------------------------

    def _discover_at_startup(self) -> Discovery | None:
        try:
            reply = fetch_modules_blocking(
                self._config.glia_urls, self._config.auth_token, self._config.startup_timeout
            )
        except GliaFailure as e:
            logger.warning(
                "glia at %s is not reachable at start-up (%s); registering the default callbacks and "
                "the web resources configured, and asking glia again every %g s: until it answers, every "
                "callback goes to glia and follows its failure mode",
                self._config.glia_url,
                e,
                self._config.discovery_retry_interval,
            )
            return None
        return Discovery.from_reply(reply)

    def _register_callbacks(self, specs: Iterable[CallbackSpec]) -> None:
        by_category: dict[str, dict[str, Callback]] = {}
        names: dict[str, list[str]] = {}
        for spec in specs:
            by_category.setdefault(spec.category, {})[spec.keyword or spec.name] = self.make_callback(spec)
            names.setdefault(spec.category, []).append(spec.name)
        controller = by_category.get(BACKGROUND_UPDATES, {})
        if controller and BACKGROUND_CONTROLLER[0] not in controller:
            logger.warning("glia serves %s without on_update; Synapse takes them only with it", sorted(controller))
            del by_category[BACKGROUND_UPDATES]
        registered: set[str] = set()
        for category, callbacks in by_category.items():
            try:
                getattr(self._api, REGISTER_METHODS[category])(**callbacks)
            except ConfigError as e:
                # Password auth callbacks are refused when Synapse delegates auth (MAS). Only
                # an explicit `callbacks` list makes that fatal.
                if isinstance(self._config.callbacks, tuple):
                    raise
                logger.warning("Synapse refused the %s callbacks (%s); not forwarding them", category, e.msg)
                self._refused |= frozenset(names[category])
                continue
            registered.update(names[category])
        self._registered = frozenset(registered)

    def _register_auth_checkers(self, discovery: Discovery | None) -> None:
        checkers, unknown = select_login_types(self._config, discovery)
        for login_type in unknown:
            if login_type not in self._login_types:
                logger.warning(
                    "glia serves login type %r but does not say its fields; list them under the "
                    "bridge's login_types to register it",
                    login_type,
                )
        new = {t: f for t, f in checkers.items() if t not in self._login_types}
        if not new:
            return
        check_auth = self.make_callback(CHECK_AUTH)
        try:
            self._api.register_password_auth_provider_callbacks(
                auth_checkers={(login_type, fields): check_auth for login_type, fields in new.items()}
            )
        except ConfigError as e:  # auth delegated to MAS: see `_register_callbacks`
            if isinstance(self._config.callbacks, tuple):
                raise
            logger.warning("Synapse refused the auth checkers for %s (%s)", sorted(new), e.msg)
            return
        self._login_types.update(new)

    def _register_web_resources(self, discovery: Discovery | None) -> tuple[str, ...]:
        """Registers a `GliaWebResource` at each prefix, and at each path known now (glia's,
        or `web_resource_paths` when glia cannot be asked) outside them: Synapse takes web
        resources only now. Returns the paths registered."""
        if not self._config.web_resources:
            return ()
        known = discovery.web_paths if discovery is not None else self._config.web_resource_paths
        exact = tuple(path for path in known if not self._below_a_prefix(path))
        for path in (*self._config.web_resource_prefixes, *exact):
            resource = GliaWebResource(self._client, self._config.default_timeout, self._web_routes)
            self._api.register_web_resource(path, resource)
        self._web_paths = exact
        return (*self._config.web_resource_prefixes, *exact)

    def _below_a_prefix(self, path: str) -> bool:
        """Whether `path` is served through one of the `web_resource_prefixes`."""
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self._config.web_resource_prefixes)

    # -- glia's listing, at start-up and later ----------------------------------------------

    def _apply_discovery(self, discovery: Discovery, at_startup: bool = False) -> None:
        """Takes glia's listing: which registered callbacks to answer without glia, which
        web paths glia serves; later on, also the login types it serves, and what this
        process cannot serve without a restart (logged once for each change)."""
        if not at_startup and not self._listed:
            logger.info("glia answers now: applying its module list")
        self._listed = True
        if self._config.web_resources:
            self._web_routes.update(discovery.web_paths, discovery.web_subtrees)
        if self._config.callbacks == AUTO:
            self._unserved = frozenset(
                name for name in self._registered if name not in discovery.callbacks and BY_NAME[name].may_fail_open
            )
        if at_startup:
            self._reported["unregistered"] = self._unregistered(discovery)
            return
        self._register_auth_checkers(discovery)
        self._report(
            "unserved",
            self._unserved,
            "glia is reachable; no glia module serves %s: answered as Synapse answers with no module for them",
            cleared="glia is reachable; it serves every callback this process registered",
            level=logging.INFO,
        )
        self._report(
            "unregistered",
            self._unregistered(discovery),
            "glia serves callbacks %s, which this process did not register at start-up: restart Synapse to "
            "forward them (Synapse takes callbacks only at start-up)",
        )
        unreachable = frozenset(
            path
            for path in discovery.web_paths
            if self._config.web_resources and path not in self._web_paths and not self._below_a_prefix(path)
        )
        self._report(
            "web",
            unreachable,
            "glia serves web resources %s, outside the bridge's web_resource_prefixes and not registered at "
            "start-up: restart Synapse, or list them under web_resource_paths (or a prefix of theirs under "
            "web_resource_prefixes), to serve them",
        )

    def _unregistered(self, discovery: Discovery) -> frozenset[str]:
        """The callbacks glia serves that `callbacks: auto` would forward but this process
        did not register (not known at start-up)."""
        if self._config.callbacks != AUTO:
            return frozenset()
        own = (CHECK_AUTH.name, POST_LOGIN.name)  # not registered as callbacks with Synapse
        served = frozenset(name for name in discovery.callbacks if name in BY_NAME and name not in own)
        return served - self._registered - self._refused

    def _report(
        self,
        topic: str,
        names: frozenset[str],
        message: str,
        cleared: str | None = None,
        level: int = logging.WARNING,
    ) -> None:
        """Logs `message` naming `names` when they changed since the last report on `topic`
        (or `cleared`, at INFO, when they are gone)."""
        if self._reported.get(topic, frozenset()) == names:
            return
        self._reported[topic] = names
        if names:
            logger.log(level, message, sorted(names))
        elif cleared is not None:
            logger.info(cleared)
