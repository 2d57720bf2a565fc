"""One trace across the deployment: a client's message send to a real Synapse with its own
tracing on (opentracing/Jaeger, `force_tracing_for_users`), through the glia bridge, the
coordinator (`glia serve`), a `glia worker` on a real nats-server, to a Python module
(`placement: nats`) the worker hosts in its Python host.

Synapse's spans go over UDP to `trace_receivers.JaegerAgent` (a receiver written for this test that
decodes the real jaeger-client protocol with jaeger-client's own thrift types); glia's go over
OTLP/gRPC to `glia-otlp-receiver` (glia_tests::otlp::OtlpReceiver as a process).
jaeger-client makes 64-bit trace ids; the bridge writes them into the 128-bit W3C trace id
zero-padded (the bridge's `glia_synapse/tracing.py`), and both sides are compared in that form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import GLIA_TOKEN, SERVER_NAME, Glia, NatsServer, Process, Synapse, bridge_module, free_port, wait_until
from hosting import ORACLE, module_info, python_path_env, python_section
from trace_receivers import JaegerAgent, JaegerSpan, OtlpReceiver

#: The Python module the worker hosts (the scripted oracle, answering NOT_SPAM).
MODULE = "pyspam"
#: glia's `telemetry.service_name`: its processes are `trace-coordinator` and `trace-worker`.
SERVICE = "trace"
#: The servlet span Synapse opens for `PUT /rooms/{room}/send/...`.
SEND_SERVLET = "RoomSendEventRestServlet"
#: How long spans may take to arrive (a bound, not a measure: both exporters flush within 1 s).
PATIENCE_S = 30


def glia_config(port: int, nats_url: str, otlp: str, workdir: Path) -> dict[str, Any]:
    """The coordinator's and the worker's config: one Python module served over NATS."""
    (workdir / "script.json").write_text("{}")
    module = {
        "module": "scripted_synapse.ScriptedModule",
        "name": MODULE,
        "placement": "nats",
        "config": {
            "name": MODULE,
            "script": str(workdir / "script.json"),
            "calls": str(workdir / "calls.jsonl"),
            "callbacks": ["check_event_for_spam"],
        },
    }
    return {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "deadline": "10s",
        "bus": {"type": "nats", "url": nats_url},
        "python": python_section(SERVER_NAME),
        "telemetry": {
            "service_name": SERVICE,
            "traces": {"exporter": "otlp", "protocol": "grpc", "endpoint": otlp, "sample_ratio": 1.0},
        },
        "modules": [module],
    }


def opentracing(agent_port: int, user: str) -> dict[str, Any]:
    """Synapse's `opentracing:` section: every span sampled, sent to the agent on loopback."""
    return {
        "enabled": True,
        "homeserver_whitelist": [".*"],
        "force_tracing_for_users": [user],
        "jaeger_config": {
            "sampler": {"type": "const", "param": 1},
            "local_agent": {"reporting_host": "127.0.0.1", "reporting_port": agent_port},
            "logging": False,
        },
    }


@dataclass
class Deployment:
    """The processes under test and the two trace receivers."""

    synapse: Synapse
    jaeger: JaegerAgent
    otlp: OtlpReceiver
    processes: list[Any]


@pytest.fixture(scope="module")
def deployment(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("trace")
    started: list[Any] = []
    try:
        jaeger = JaegerAgent().start()
        started.append(jaeger)
        otlp = OtlpReceiver.start(workdir)
        started.append(otlp)
        nats = NatsServer.start(workdir)
        started.append(nats)
        port = free_port()
        config = glia_config(port, nats.url, otlp.grpc, workdir)
        # Spans are exported in batches; a short delay lets the test see them at once.
        env = {**python_path_env(ORACLE), "OTEL_BSP_SCHEDULE_DELAY": "100"}
        glia = Glia.start(glia_bin, workdir, config, port, env=env)
        started.append(glia)
        worker = Process(
            "glia-worker", [str(glia_bin), "worker", "--config", str(glia.config_path)], workdir / "worker.log", env
        ).start()
        started.append(worker)
        wait_until(lambda: module_info(glia.url, MODULE)["state"] == "running", 90, "the worker serving", worker.tail)
        synapse = Synapse.start(
            workdir / "synapse",
            [bridge_module(glia.url)],
            overrides={"opentracing": opentracing(jaeger.port, f"@alice:{SERVER_NAME}")},
        )
        started.append(synapse)
    except RuntimeError as e:
        for p in reversed(started):
            p.stop()
        pytest.fail(str(e), pytrace=False)
    yield Deployment(synapse, jaeger, otlp, started)
    for p in reversed(started):
        p.stop()


def chain(spans: dict[str, Any], start: str, parent: Any) -> list[str]:
    """The span ids from `start` up through its parents (`parent(span)`) while they are known."""
    out = [start]
    while (up := parent(spans[out[-1]])) in spans and up not in out:
        out.append(up)
    return out


def traced_send(synapse: Synapse, jaeger: JaegerAgent, describe: Callable[[], str]) -> JaegerSpan:
    """alice (whose requests Synapse traces) sends a message to a room of hers; returns
    Synapse's request span for the send, which opened its trace."""
    alice = synapse.register("alice")
    room = alice.create_room(preset="public_chat")
    assert room.status == 200, room
    sent = alice.send_text(room.body["room_id"], "traced")
    assert sent.status == 200, sent

    def servlet() -> JaegerSpan | None:
        return next((s for s in jaeger.spans if s.name == SEND_SERVLET), None)

    wait_until(lambda: servlet() is not None, PATIENCE_S, "Synapse's /send span", describe)
    request = servlet()
    assert request is not None
    return request


def test_one_trace_from_synapses_request_span_to_the_python_module(deployment: Deployment) -> None:
    request = traced_send(deployment.synapse, deployment.jaeger, lambda: describe(deployment))
    trace_id = request.trace_id

    # glia's spans in that trace: the coordinator's dispatch, the worker's span for the module.
    def in_trace() -> list[dict[str, Any]]:
        return [s for s in deployment.otlp.spans() if s["trace_id"] == trace_id]

    def worker_span() -> dict[str, Any] | None:
        return next(
            (s for s in in_trace() if s["attributes"].get("glia.module") == MODULE and s["kind"] == "consumer"), None
        )

    wait_until(
        lambda: worker_span() is not None, PATIENCE_S, "the worker's span for the module", lambda: describe(deployment)
    )
    spans = {s["span_id"]: s for s in in_trace()}
    module_span = worker_span()
    assert module_span is not None
    assert module_span["service_name"] == f"{SERVICE}-worker", module_span
    services = {s["service_name"] for s in spans.values()}
    assert {f"{SERVICE}-coordinator", f"{SERVICE}-worker"} <= services, services

    # The module's span leads up through the coordinator to a span of Synapse's.
    glia_chain = chain(spans, module_span["span_id"], lambda s: s["parent_span_id"])
    names = [spans[s]["name"] for s in glia_chain]
    top = spans[glia_chain[-1]]
    assert top["name"] == "dispatch check_event_for_spam", names
    assert top["service_name"] == f"{SERVICE}-coordinator", top
    # The bridge propagated that span of Synapse's.
    assert_leads_up_to(deployment.jaeger, top["parent_span_id"], request, lambda: describe(deployment))


def assert_leads_up_to(jaeger: JaegerAgent, parent: str, request: JaegerSpan, describe: Callable[[], str]) -> None:
    """Waits for Synapse's span `parent` (the parent of glia's top span) and checks that it
    leads up to Synapse's `request` span, in its trace."""
    wait_until(
        lambda: any(s.span_id == parent for s in jaeger.spans),
        PATIENCE_S,
        f"Synapse's span {parent}, the parent of glia's",
        describe,
    )
    jaeger_spans = {s.span_id: s for s in jaeger.spans if s.trace_id == request.trace_id}
    synapse_chain = chain(jaeger_spans, parent, lambda s: s.parent_span_id)
    assert request.span_id in synapse_chain, [jaeger_spans[s].name for s in synapse_chain]
    assert not jaeger.errors, jaeger.errors


def describe(deployment: Deployment) -> str:
    """What both receivers got, and the logs' ends, for a failure message."""
    jaeger = "\n".join(f"  {s}" for s in deployment.jaeger.spans[-40:])
    otlp = "\n".join(f"  {s}" for s in deployment.otlp.spans()[-40:])
    processes = [p if isinstance(p, Process) else getattr(p, "process", None) for p in deployment.processes]
    logs = "\n".join(p.tail() for p in processes if isinstance(p, Process))
    return f"Jaeger spans:\n{jaeger}\nerrors: {deployment.jaeger.errors}\nOTLP spans:\n{otlp}\n{logs}"
