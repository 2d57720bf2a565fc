"""`GliaEmbedded`: the Synapse module of the embedded placement.

At construction it starts glia inside this process (`_native.Runtime`: glia's coordinator and
the modules of its config, on glia's own threads) and registers with Synapse the callbacks
glia's plans serve, as the bridge's `callbacks: auto` does. Each callback's arguments are
encoded as the bridge encodes them (`glia_synapse.convert`) and handed to the coordinator
in-process; its reply is read as the bridge reads it (`glia_synapse.replies`). A dispatch
whose modules answer at once is answered on Synapse's thread; one that waits (a module on its
own thread, over NATS, in a Python host) goes on on glia's thread and resolves a Deferred
through `reactor.callFromThread`, so Synapse's reactor never waits for a module. glia's
metrics are served through Synapse's own Prometheus registry (`metrics`), and glia's span of
each dispatch is a child of Synapse's active span when Synapse traces the request.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer, reactor

from glia_embedded import _native, metrics
from glia_embedded.config import EmbeddedConfig, parse_config
from glia_synapse.bridge import FailureLog, callback_for
from glia_synapse.catalogue import (
    BACKGROUND_UPDATES,
    CALLBACKS,
    CHECK_AUTH,
    REGISTER_METHODS,
    CallbackSpec,
    bind_post_login,
)
from glia_synapse.config import DEFAULT_MEDIA_BYTES
from glia_synapse.convert import ENCODERS, encode_args, encode_event, read_media_file
from glia_synapse.discovery import Discovery
from glia_synapse.errors import GliaCallbackFailed, GliaFailure
from glia_synapse.logcontext import yieldable
from glia_synapse.replies import check_error
from glia_synapse.tracing import trace_headers

logger = logging.getLogger(__name__)

#: How often (ms) the `per_thread` instances living on Synapse's thread get to run their
#: ready tasks (a rebuild after a crash) when no callback comes to run them.
DRIVE_INTERVAL_MS = 100

#: The bridge's encoders, but an event's PDU is copied shallowly: the runtime reads Synapse's
#: immutable mappings and tuples itself, so the bridge's deep `plain` copy is not needed.
EMBEDDED_ENCODERS = {**ENCODERS, "event": functools.partial(encode_event, copy=dict)}


class GliaEmbedded:
    """A Synapse module that runs glia in this process and answers callbacks from it."""

    parse_config = staticmethod(parse_config)

    def __init__(self, config: EmbeddedConfig, api: Any) -> None:
        self._config = config
        self._api = api
        self._failures = FailureLog()
        #: Dispatches still waiting, by the token the runtime gave them.
        self._waiting: dict[int, defer.Deferred[Any]] = {}
        self._runtime = _native.Runtime(config.config_file, config.http, self._notify)
        metrics.register(self._runtime.metrics)
        discovery = Discovery.from_reply(json.loads(self._runtime.listing()))
        # The background-update controller (its `on_update` is an async context manager, and
        # its batch sizes fall back to Synapse's settings) is the bridge's alone for now.
        specs = [s for s in CALLBACKS if s.name in discovery.callbacks and s.category != BACKGROUND_UPDATES]
        self._register(specs)
        checkers = {t: f for t, f in discovery.login_types.items() if f is not None}
        if checkers:
            check_auth = callback_for(CHECK_AUTH, self.forward, type(self).__name__)
            api.register_password_auth_provider_callbacks(
                auth_checkers={(login_type, fields): check_auth for login_type, fields in checkers.items()}
            )
        api.looping_background_call(self._runtime.drive, DRIVE_INTERVAL_MS)
        reactor.addSystemEventTrigger("before", "shutdown", self._runtime.stop)
        logger.info(
            "embedded glia (%s): %d callbacks (%s), login types %s",
            config.config_file,
            len(specs),
            ", ".join(s.name for s in specs) or "none",
            sorted(checkers) or "none",
        )

    def _register(self, specs: list[CallbackSpec]) -> None:
        by_category: dict[str, dict[str, Any]] = {}
        for spec in specs:
            callback = callback_for(spec, self.forward, type(self).__name__)
            by_category.setdefault(spec.category, {})[spec.keyword or spec.name] = callback
        for category, callbacks in by_category.items():
            getattr(self._api, REGISTER_METHODS[category])(**callbacks)

    async def forward(self, spec: CallbackSpec, args: Mapping[str, Any]) -> Any:
        """Has glia decide one callback invocation; returns what Synapse expects, or raises
        what glia decided the module raised. The reply is read at once when glia decided on
        this thread, else once glia's thread has (no coroutine of its own on the first path:
        it runs for every event served)."""
        try:
            body = encode_args(spec.params, args, spec.skip, EMBEDDED_ENCODERS)
            if spec.file_param is not None:
                body["file"] = await read_media_file(args[spec.file_param], DEFAULT_MEDIA_BYTES)
            # Synapse's active span, if it traces this request: glia's span is its child.
            trace = trace_headers()
            try:
                reply = self._runtime.call(spec.name, body, trace.get("traceparent"), trace.get("tracestate"))
            except _native.DispatchFailed as e:
                raise GliaFailure(f"glia could not decide: {e.args}", kind="http_error") from e
            except (ValueError, OSError) as e:
                raise GliaFailure(f"glia refused the request: {e}", kind="bad_request") from e
            if type(reply) is int:
                reply = await yieldable(self._wait(reply))
            return bind_post_login(spec.reply.decode(check_error(reply), args), self.forward)
        except GliaFailure as failure:
            return self._resolve_failure(spec, failure)

    def _wait(self, token: int) -> defer.Deferred[Any]:
        """The Deferred the waiting dispatch `token` resolves (see `_notify`)."""
        waiting: defer.Deferred[Any] = defer.Deferred()
        self._waiting[token] = waiting
        return waiting

    def _notify(self, token: int, reply: Any, failure: tuple[int, str, str] | None) -> None:
        """Called on the runtime's notifying thread when a waiting dispatch is decided."""
        reactor.callFromThread(self._decided, token, reply, failure)

    def _decided(self, token: int, reply: Any, failure: tuple[int, str, str] | None) -> None:
        waiting = self._waiting.pop(token, None)
        if waiting is None:
            return
        if failure is None:
            waiting.callback(reply)
        else:
            waiting.errback(GliaFailure(f"glia could not decide: {failure}", kind="http_error"))

    def _resolve_failure(self, spec: CallbackSpec, failure: GliaFailure) -> Any:
        if self._config.fails_open(spec.name):
            self._failures.failed(spec.name, failure, "embedded", "failing open")
            return spec.reply.fail_open()
        self._failures.failed(spec.name, failure, "embedded", "failing closed")
        raise GliaCallbackFailed(f"glia could not decide {spec.name}: {failure}") from failure
