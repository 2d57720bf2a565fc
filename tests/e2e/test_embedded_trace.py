"""End to end: glia embedded in a real Synapse's process joins Synapse's own trace. Synapse
traces alice's requests (opentracing/Jaeger, `force_tracing_for_users`); the embedded module
hands Synapse's active span to each dispatch, and glia's `dispatch check_event_for_spam` span
(exported over OTLP/gRPC to `glia-otlp-receiver`) is a child of a span of Synapse's, up to the
`/send` request's. Receivers and helpers are test_trace_through.py's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from harness import Synapse, embedded_module, mxid, wait_until
from test_trace_through import PATIENCE_S, assert_leads_up_to, opentracing, traced_send
from trace_receivers import JaegerAgent, OtlpReceiver

#: glia's `telemetry.service_name` inside Synapse's process (its spans say `<name>-coordinator`).
SERVICE = "embedded-trace"
DISPATCH = "dispatch check_event_for_spam"


@dataclass
class Traced:
    """Synapse with glia embedded, and the two trace receivers."""

    synapse: Synapse
    jaeger: JaegerAgent
    otlp: OtlpReceiver


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    try:
        import glia_embedded  # noqa: F401
    except ImportError as e:
        pytest.fail(f"{e}: build and install the wheel with tests/e2e/embedded.sh (run.sh does)", pytrace=False)
    workdir = tmp_path_factory.mktemp("embedded-trace")
    started: list[Any] = []
    try:
        jaeger = JaegerAgent().start()
        started.append(jaeger)
        otlp = OtlpReceiver.start(workdir)
        started.append(otlp)
        config = {
            "telemetry": {
                "service_name": SERVICE,
                "traces": {"exporter": "otlp", "protocol": "grpc", "endpoint": otlp.grpc, "sample_ratio": 1.0},
            },
            # Answers on Synapse's thread (per_thread): the trace context goes with the first poll.
            "modules": [{"module": "list_spam_checker", "config": {"evil_users": [mxid("spammer")]}}],
        }
        glia_file = workdir / "glia.yaml"
        glia_file.write_text(yaml.safe_dump(config, sort_keys=False))
        synapse = Synapse.start(
            workdir / "synapse",
            [embedded_module(glia_file)],
            overrides={"opentracing": opentracing(jaeger.port, mxid("alice"))},
            # Spans are exported in batches; a short delay lets the test see them at once.
            env={**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "100"},
        )
        started.append(synapse)
    except RuntimeError as e:
        for p in reversed(started):
            p.stop()
        pytest.fail(str(e), pytrace=False)
    yield Traced(synapse, jaeger, otlp)
    for p in reversed(started):
        p.stop()


def test_the_embedded_dispatch_span_is_a_child_of_synapses_span(traced: Traced) -> None:
    request = traced_send(traced.synapse, traced.jaeger, lambda: describe(traced))
    trace_id = request.trace_id

    def dispatch() -> dict[str, Any] | None:
        return next((s for s in traced.otlp.spans() if s["trace_id"] == trace_id and s["name"] == DISPATCH), None)

    wait_until(
        lambda: dispatch() is not None, PATIENCE_S, f"glia's {DISPATCH!r} in Synapse's trace", lambda: describe(traced)
    )
    span = dispatch()
    assert span is not None
    assert span["service_name"] == f"{SERVICE}-coordinator", span
    assert_leads_up_to(traced.jaeger, span["parent_span_id"], request, lambda: describe(traced))


def describe(traced: Traced) -> str:
    """What both receivers got, and Synapse's output, for a failure message."""
    jaeger = "\n".join(f"  {s}" for s in traced.jaeger.spans[-40:])
    otlp = "\n".join(f"  {s}" for s in traced.otlp.spans()[-40:])
    return f"Jaeger spans:\n{jaeger}\nOTLP spans:\n{otlp}\n{traced.synapse.process.tail()}"
