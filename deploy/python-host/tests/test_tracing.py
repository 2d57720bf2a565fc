"""The host's span per callback (`tracing.py`): its parent is the context in glia's frame, it
says the module, callback and outcome, and without the OpenTelemetry SDK the host warns once
and serves untraced. Spans are collected by the SDK's own in-memory exporter."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import run
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from glia_python_host import tracing
from glia_python_host.child import FrameWriter, serve_frames
from glia_python_host.hosted import HostedModule
from glia_python_host.settings import HomeserverSettings
from glia_python_host.tracing import Tracing, TracingError
from glia_python_host.web import WebServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"

MODULE = """
from synapse.module_api import NOT_SPAM


class Traced:
    def __init__(self, config, api):
        api.register_spam_checker_callbacks(user_may_invite=self.user_may_invite)

    @staticmethod
    def parse_config(config):
        return config

    async def user_may_invite(self, inviter, invitee, room_id):
        if inviter.startswith("@boom"):
            raise RuntimeError("the module broke")
        return NOT_SPAM
"""


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> HostedModule:
    directory = tmp_path_factory.mktemp("traced")
    (directory / "traced_module.py").write_text(textwrap.dedent(MODULE))
    sys.path.insert(0, str(directory))
    return HostedModule("traced_module.Traced", {}, HomeserverSettings.from_json({"server_name": "x"}), "traced")


@pytest.fixture
def exported() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield Tracing(provider), spans
    provider.shutdown()


def invoke_frame(frame_id: int, inviter: str, **context: str) -> bytes:
    invocation = {
        "request_id": f"py-{frame_id}",
        "deadline_ms": 2**53,
        "callback": "user_may_invite",
        "args": {"inviter": inviter, "invitee": "@b:x", "room_id": "!r:x"},
    }
    return json.dumps({"invoke": {"id": frame_id, "invocation": invocation, **context}}).encode() + b"\n"


def serve(module: HostedModule, tracer: Tracing, *frames: bytes) -> list[dict[str, Any]]:
    """Feeds `frames` to the child host's frame loop and returns the frames it wrote."""

    async def go() -> list[dict[str, Any]]:
        reader = asyncio.StreamReader()
        for frame in frames:
            reader.feed_data(frame)
        reader.feed_eof()
        out = io.BytesIO()
        await serve_frames(reader, FrameWriter(out), module, await WebServer.start({}), tracer)
        # The frame loop returns at end of input; the invocations' tasks finish after it (the
        # bound is on a hang, not a measure).
        for _ in range(3000):
            if len(out.getvalue().splitlines()) >= len(frames):
                break
            await asyncio.sleep(0.01)
        return [json.loads(line) for line in out.getvalue().splitlines()]

    return run(go())  # type: ignore[no-any-return]


def test_the_callbacks_span_continues_the_frames_trace_context(
    module: HostedModule, exported: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracer, spans = exported
    replies = serve(module, tracer, invoke_frame(1, "@a:x", traceparent=TRACEPARENT, tracestate="vendor=1"))
    assert replies[0]["reply"]["reply"]["result"] == {"answer": {"callback": "user_may_invite", "answer": "NOT_SPAM"}}
    (span,) = spans.get_finished_spans()
    assert span.name == "module user_may_invite"
    assert span.kind == SpanKind.INTERNAL
    assert span.parent is not None and span.parent.is_remote
    assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (TRACE_ID, PARENT_ID)
    assert span.context.trace_state.get("vendor") == "1"
    assert dict(span.attributes or {}) == {
        "glia.module": "traced",
        "glia.callback": "user_may_invite",
        "glia.outcome": "answer",
    }


def test_a_frame_without_or_with_a_bad_context_starts_a_new_trace(
    module: HostedModule, exported: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracer, spans = exported
    bad = f"00-{TRACE_ID}-0000000000000000-01"
    serve(module, tracer, invoke_frame(1, "@a:x"), invoke_frame(2, "@a:x", traceparent=bad))
    finished: tuple[ReadableSpan, ...] = spans.get_finished_spans()
    assert len(finished) == 2
    assert all(span.parent is None for span in finished), finished


def test_the_outcome_of_a_raising_callback_is_on_its_span(
    module: HostedModule, exported: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracer, spans = exported
    replies = serve(module, tracer, invoke_frame(1, "@boom:x", traceparent=TRACEPARENT))
    assert replies[0]["reply"]["reply"]["result"]["error"]["kind"] == "failed"
    (span,) = spans.get_finished_spans()
    assert (span.attributes or {})["glia.outcome"] == "failed"
    assert span.status.status_code == StatusCode.ERROR


def test_the_context_is_read_only_from_short_strings() -> None:
    assert tracing.carrier(TRACEPARENT, "v=1") == {"traceparent": TRACEPARENT, "tracestate": "v=1"}
    assert tracing.carrier(TRACEPARENT, "") == {"traceparent": TRACEPARENT}
    assert tracing.carrier(None, "v=1") == {}
    assert tracing.carrier(7, None) == {}
    assert tracing.carrier("0" * 513, None) == {}


def test_export_is_asked_for_as_glia_asks_for_it() -> None:
    assert not tracing.requested({})
    assert tracing.requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing.requested({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.requested({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert not tracing.requested({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
    with pytest.raises(TracingError, match="OTEL_TRACES_EXPORTER"):
        tracing.requested({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert tracing.protocol({}) == "http/protobuf"
    assert tracing.protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == "grpc"
    assert tracing.protocol({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}) == "http/protobuf"
    with pytest.raises(TracingError):
        tracing.protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    # Milliseconds, as the specification and glia say.
    assert tracing.timeout_s({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500"}) == 2.5
    assert tracing.timeout_s({}) == 10.0


def test_without_the_sdk_the_host_warns_once_and_serves_untraced(
    module: HostedModule, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    # As if the `tracing` extra were not installed: importing the SDK fails.
    for name in ("opentelemetry.sdk.resources", "opentelemetry.sdk.trace", "opentelemetry.sdk.trace.export"):
        monkeypatch.setitem(sys.modules, name, None)
    with caplog.at_level(logging.WARNING, logger="glia_python_host.tracing"):
        tracer = Tracing.from_env("traced")
    assert not tracer.enabled
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "glia-python-host[tracing]" in warnings[0], warnings
    replies = serve(module, tracer, invoke_frame(1, "@a:x", traceparent=TRACEPARENT))
    assert "answer" in replies[0]["reply"]["reply"]["result"]
    tracer.close()


def test_a_dead_collector_costs_no_callback(module: HostedModule, monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 (discard) on loopback: nothing listens, every export fails.
    for transport in ("grpc", "http/protobuf"):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", transport)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "200")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
        monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
        tracer = Tracing.from_env("traced")
        assert tracer.enabled, transport
        frames = [invoke_frame(n, "@a:x", traceparent=TRACEPARENT) for n in range(1, 6)]
        replies = serve(module, tracer, *frames)
        assert all("answer" in r["reply"]["reply"]["result"] for r in replies), replies
        tracer.close()
