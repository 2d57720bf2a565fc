"""Request ids and trace context for the requests the bridge sends to glia.

`X-Request-Id` names the Synapse request that triggered the callback (its log context,
e.g. `PUT-42`) plus a per-call suffix, so glia's logs can be matched with Synapse's.

Trace context: when the OpenTelemetry API is installed in Synapse's environment and a span
is current, its W3C `traceparent` (and `tracestate`) are injected. Otherwise, when Synapse's
own (OpenTracing/Jaeger) tracing is enabled and a span is active, its context is injected in
the tracer's own headers and also written as a W3C `traceparent` derived from the Jaeger
trace and span ids. With neither, no trace header is sent.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

_counter = itertools.count(1)
_process_tag = os.urandom(3).hex()

try:  # Synapse's internals, read for labels and trace context only: absent, neither is sent
    from synapse.logging import opentracing as _synapse_tracing
    from synapse.logging.context import current_context as _current_context
except ImportError:  # pragma: no cover - a Synapse whose internals moved
    _synapse_tracing = None  # type: ignore[assignment]
    _current_context = None  # type: ignore[assignment]

try:  # optional: only when Synapse's environment has the OpenTelemetry API
    from opentelemetry import propagate as _otel_propagate
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    _otel_propagate = None
    _otel_trace = None


def synapse_request_name() -> str:
    """The current Synapse log context's name (`PUT-42`, a background process, ...), or
    `bridge` outside any."""
    if _current_context is None:
        return "bridge"
    try:
        name = str(_current_context())
    except Exception:  # noqa: BLE001 - best effort, never fail a callback for a log label
        return "bridge"
    return name if name and name != "sentinel" else "bridge"


def new_request_id() -> str:
    """A fresh `X-Request-Id`: `<synapse request>.<process tag><counter>`."""
    return f"{synapse_request_name()}.{_process_tag}{next(_counter):x}"


def trace_headers() -> dict[str, str]:
    """Headers carrying the current trace context, or none."""
    headers = _otel_headers()
    if not headers:
        headers = _synapse_opentracing_headers()
    return headers


def _otel_headers() -> dict[str, str]:
    if _otel_trace is None or _otel_propagate is None:
        return {}
    try:
        if not _otel_trace.get_current_span().get_span_context().is_valid:
            return {}
        carrier: dict[str, str] = {}
        _otel_propagate.inject(carrier)
        return carrier
    except Exception:
        logger.debug("could not inject the OpenTelemetry context", exc_info=True)
        return {}


def _synapse_opentracing_headers() -> dict[str, str]:
    if _synapse_tracing is None:
        return {}
    try:
        span = _synapse_tracing.active_span()
        if span is None:
            return {}
        carrier: dict[str, str] = {}
        opentracing = getattr(_synapse_tracing, "opentracing")  # noqa: B009 - None without opentracing
        opentracing.tracer.inject(span.context, opentracing.Format.HTTP_HEADERS, carrier)
    except Exception:  # noqa: BLE001 - opentracing missing or disabled
        return {}
    parent = traceparent_from_ids(span.context)
    if parent:
        carrier["traceparent"] = parent
    return carrier


def traceparent_from_ids(context: Any) -> str | None:
    """A W3C `traceparent` from a span context with integer `trace_id` and `span_id` (as
    Jaeger's), or None."""
    trace_id = getattr(context, "trace_id", None)
    span_id = getattr(context, "span_id", None)
    if not isinstance(trace_id, int) or not isinstance(span_id, int) or not trace_id or not span_id:
        return None
    flags = getattr(context, "flags", 1)
    sampled = 1 if (flags if isinstance(flags, int) else 1) & 1 else 0
    return f"00-{trace_id & (2**128 - 1):032x}-{span_id & (2**64 - 1):016x}-{sampled:02x}"
