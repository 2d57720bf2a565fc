"""Trace receivers for the end-to-end tests: a Jaeger agent for Synapse's own tracing and
glia's OTLP receiver run as a process (`glia-otlp-receiver`).

No Jaeger binary is installed here, so `JaegerAgent` is a receiver written for the tests: it
takes the UDP packets jaeger-client sends to an agent and decodes them with jaeger-client's
own generated thrift types (`Agent.emitBatch`, thrift compact protocol), the real protocol.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaeger_client.thrift_gen.agent import Agent
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.transport.TTransport import TMemoryBuffer

from harness import Process, built_binary, wait_until

#: Jaeger's ids are signed 64-bit thrift integers; ids are compared as unsigned.
U64 = 2**64 - 1


@dataclass(frozen=True)
class JaegerSpan:
    """One span a Jaeger client reported, its ids as the W3C hex strings glia uses."""

    service: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    tags: dict[str, Any]


def decode_batch(packet: bytes) -> list[JaegerSpan]:
    """The spans of one `emitBatch` UDP packet."""
    protocol = TCompactProtocol(TMemoryBuffer(packet))
    name, _, _ = protocol.readMessageBegin()
    if name != "emitBatch":
        return []
    args = Agent.emitBatch_args()
    args.read(protocol)
    protocol.readMessageEnd()
    batch = args.batch
    return [
        JaegerSpan(
            service=batch.process.serviceName,
            trace_id=f"{((span.traceIdHigh or 0) & U64) << 64 | (span.traceIdLow & U64):032x}",
            span_id=f"{span.spanId & U64:016x}",
            parent_span_id=f"{span.parentSpanId & U64:016x}" if span.parentSpanId else None,
            name=span.operationName,
            tags={tag.key: _tag_value(tag) for tag in span.tags or []},
        )
        for span in batch.spans
    ]


def _tag_value(tag: Any) -> Any:
    for value in (tag.vStr, tag.vLong, tag.vBool, tag.vDouble):
        if value is not None:
            return value
    return None


@dataclass
class JaegerAgent:
    """A UDP endpoint on loopback that records every span jaeger-client reports to it."""

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    spans: list[JaegerSpan] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> JaegerAgent:
        self.sock.bind(("127.0.0.1", 0))
        threading.Thread(target=self._serve, name="jaeger-agent", daemon=True).start()
        return self

    def _serve(self) -> None:
        while True:
            try:
                packet = self.sock.recv(65535)
            except OSError:  # closed by stop()
                return
            try:
                self.spans.extend(decode_batch(packet))
            except Exception as e:  # noqa: BLE001 - recorded for the test's failure message
                self.errors.append(repr(e))

    def stop(self) -> None:
        self.sock.close()


def otlp_receiver_binary() -> Path:
    """`glia-otlp-receiver`: `GLIA_OTLP_RECEIVER_BIN`, else beside the glia binary."""
    return built_binary("glia-otlp-receiver", "GLIA_OTLP_RECEIVER_BIN")


@dataclass
class OtlpReceiver:
    """`glia-otlp-receiver` running: its endpoints, and the spans it wrote to its log."""

    process: Process
    grpc: str
    http: str

    @classmethod
    def start(cls, workdir: Path) -> OtlpReceiver:
        process = Process("glia-otlp-receiver", [str(otlp_receiver_binary())], workdir / "otlp.jsonl").start()
        lines: list[dict[str, Any]] = []

        def ready() -> bool:
            lines[:] = [line for line in _json_lines(process.log_path) if "grpc" in line]
            return bool(lines) or not process.running()

        wait_until(ready, 10, "glia-otlp-receiver start-up", process.tail)
        if not lines:
            raise RuntimeError(f"glia-otlp-receiver exited at start-up\n{process.tail()}")
        return cls(process, lines[0]["grpc"], lines[0]["http"])

    def spans(self) -> list[dict[str, Any]]:
        """Every span received so far."""
        return [line for line in _json_lines(self.process.log_path) if "trace_id" in line]

    def stop(self) -> None:
        self.process.stop()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and line.endswith("}"):
            out.append(json.loads(line))
    return out
