"""The host's span for each module callback, a child of glia's span for the invocation.

glia sends the W3C `traceparent` (and `tracestate`) of the span it invokes the module under: in
the pipe's `invoke` frame for a child host, in the NATS headers of the same names for
`glia-python-host serve`. Where spans go is read from the standard OpenTelemetry variables,
which glia sets in a child host's environment from its own settings (`telemetry.traces`):
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `..._PROTOCOL`, `..._TIMEOUT` (milliseconds, as the
specification and glia say), `..._CERTIFICATE`, `..._CLIENT_CERTIFICATE`, `..._CLIENT_KEY`,
`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`.

Export needs the OpenTelemetry SDK (`pip install 'glia-python-host[tracing]'`); asked for without
it, the host says so once and runs untraced. Spans are queued (bounded, `OTEL_BSP_MAX_QUEUE_SIZE`)
and sent in batches by the SDK's thread, so a callback never waits for the collector, and a dead
collector costs dropped spans, never callbacks.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

#: The service name when `OTEL_SERVICE_NAME` is not set (glia sets it to `<service>-python-host`).
DEFAULT_SERVICE = "glia-python-host"
#: The longest `traceparent`/`tracestate` read (as glia: a `traceparent` is 55 bytes).
MAX_HEADER = 512
#: How long the host waits at exit for its last spans to go out.
SHUTDOWN_WAIT_S = 2.0
#: The export timeout when no variable sets one (the OTLP specification's default), in ms.
DEFAULT_TIMEOUT_MS = 10_000


class TracingError(Exception):
    """A tracing variable the host cannot use."""


def requested(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for spans, as glia decides it (`telemetry/export.rs`):
    `OTEL_SDK_DISABLED=true` says no, `OTEL_TRACES_EXPORTER` says `otlp` or `none`, else
    naming a collector (an endpoint variable) is asking for export."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if exporter in ("otlp", "none"):
        return exporter == "otlp"
    if exporter:
        raise TracingError(f'OTEL_TRACES_EXPORTER={exporter!r}: the host exports spans with "otlp" or not at all')
    return any(
        env.get(name, "").strip() for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def protocol(env: Mapping[str, str]) -> str:
    """The OTLP transport: the signal's variable, else the general one, else `http/protobuf`."""
    value = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip()
    if value in ("", "http/protobuf"):
        return "http/protobuf"
    if value == "grpc":
        return value
    raise TracingError(f'OTEL_EXPORTER_OTLP_PROTOCOL={value!r}: the host speaks "grpc" and "http/protobuf"')


def timeout_s(env: Mapping[str, str]) -> float:
    """The export timeout in seconds, from the variables' milliseconds (the specification's
    unit, and glia's; the Python SDK alone would read seconds)."""
    value = (env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT") or "").strip()
    try:
        return (int(value) if value else DEFAULT_TIMEOUT_MS) / 1000
    except ValueError:
        raise TracingError(f"OTEL_EXPORTER_OTLP_TIMEOUT={value!r} is not a number of milliseconds") from None


def carrier(traceparent: Any, tracestate: Any) -> dict[str, str]:
    """The trace context glia sent, as W3C headers; values that are not short strings are
    left out (a bad context starts a new trace rather than failing the callback)."""
    out: dict[str, str] = {}
    if isinstance(traceparent, str) and len(traceparent) <= MAX_HEADER:
        out["traceparent"] = traceparent
        if isinstance(tracestate, str) and 0 < len(tracestate) <= MAX_HEADER:
            out["tracestate"] = tracestate
    return out


def outcome(reply: Mapping[str, Any]) -> str:
    """What became of the invocation, from its `InvocationReply`: `answer`, or the error's kind."""
    result = reply.get("result")
    if isinstance(result, Mapping) and "answer" in result:
        return "answer"
    error = result.get("error") if isinstance(result, Mapping) else None
    kind = error.get("kind") if isinstance(error, Mapping) else None
    return kind if isinstance(kind, str) else "failed"


Invoke = Callable[[], Awaitable[dict[str, Any]]]


class Tracing:
    """The host's tracer: a span per callback when export is on, nothing otherwise."""

    def __init__(self, provider: Any = None) -> None:
        self._provider = provider
        self._tracer: Any = provider.get_tracer("glia_python_host") if provider is not None else None

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded."""
        return self._tracer is not None

    @classmethod
    def from_env(cls, module: str | None = None) -> Tracing:
        """The tracer the environment asks for (`module`: glia's name for the module a child host
        serves, an attribute of its resource). Never raises: a setting the host cannot
        use, or a missing SDK, is logged once and the host runs untraced."""
        env = os.environ
        try:
            if not requested(env):
                return cls()
            settings = (protocol(env), timeout_s(env))
        except TracingError as e:
            logger.warning("tracing is off: %s", e)
            return cls()
        try:
            provider = _provider(*settings, env, module)
        except ImportError as e:
            logger.warning(
                "spans are asked for (OTEL_* variables) but the OpenTelemetry SDK is missing (%s): "
                "the host runs untraced; install glia-python-host[tracing]",
                e,
            )
            return cls()
        logger.info("exporting spans over OTLP (%s) as %s", settings[0], provider.resource.attributes["service.name"])
        return cls(provider)

    async def invoke(
        self, module: str | None, invocation: Any, traceparent: Any, tracestate: Any, call: Invoke
    ) -> dict[str, Any]:
        """Runs `call` (`module`'s callback for `invocation`) inside a span whose parent is the
        context glia sent, and returns its reply."""
        if self._tracer is None:
            return await call()
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        callback = invocation.get("callback") if isinstance(invocation, Mapping) else None
        callback = callback if isinstance(callback, str) else "unknown"
        parent = TraceContextTextMapPropagator().extract(carrier(traceparent, tracestate))
        attributes = {"glia.callback": callback}
        if module is not None:
            attributes["glia.module"] = module
        span = self._tracer.start_span(
            f"module {callback}", context=parent, kind=trace.SpanKind.INTERNAL, attributes=attributes
        )
        with trace.use_span(span, end_on_exit=True, record_exception=True):
            reply = await call()
            kind = outcome(reply)
            span.set_attribute("glia.outcome", kind)
            if kind != "answer":
                span.set_status(trace.Status(trace.StatusCode.ERROR, kind))
            return reply

    def close(self) -> None:
        """Sends the spans still queued, waiting at most `SHUTDOWN_WAIT_S` (a dead collector must
        not hold the host's exit)."""
        if self._provider is None:
            return
        done = threading.Thread(target=self._provider.shutdown, name="glia-otlp-shutdown", daemon=True)
        done.start()
        done.join(SHUTDOWN_WAIT_S)


def _provider(transport: str, timeout: float, env: Mapping[str, str], module: str | None) -> Any:
    """The SDK's tracer provider: spans batched through a bounded queue to the OTLP exporter for
    `transport`, sampled as `OTEL_TRACES_SAMPLER` says (the SDK reads it). Raises ImportError
    without the SDK or the exporter."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter: Any
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter(timeout=timeout)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(timeout=timeout)
    attributes: dict[str, str] = {"glia.role": "python-host"}
    if module is not None:
        attributes["glia.module"] = module
    if not env.get("OTEL_SERVICE_NAME", "").strip():
        attributes["service.name"] = DEFAULT_SERVICE
    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME to these.
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
