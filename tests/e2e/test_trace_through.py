"""One trace across the deployment: a client's message send to a real Synapse with its own
tracing on (opentracing/Jaeger, `force_tracing_for_users`), through the glia bridge, the
coordinator (`glia serve`), a `glia worker` on a real nats-server, to a Python module
(`placement: nats`) the worker hosts in its Python host, whose own span for the callback ends the
chain; and, in the same dispatch, to a Python module `glia serve` hosts itself (`placement:
local`), whose host's span is a child of the coordinator's invocation span.

Synapse's spans go over UDP to `trace_receivers.JaegerAgent` (a receiver written for this test that
decodes the real jaeger-client protocol with jaeger-client's own thrift types); glia's go over
OTLP/gRPC to `glia-otlp-receiver` (glia_tests::otlp::OtlpReceiver as a process), and so do the
Python hosts' (the OpenTelemetry SDK, told glia's settings in the standard OTEL_* variables).
jaeger-client makes 64-bit trace ids; the bridge writes them into the 128-bit W3C trace id
zero-padded (the bridge's `glia_synapse/tracing.py`), and both sides are compared in that form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import (
    GLIA_TOKEN,
    SERVER_NAME,
    Glia,
    NatsServer,
    Process,
    Synapse,
    bridge_module,
    free_port,
    http_request,
    wait_until,
)
from hosting import ORACLE, module_info, python_path_env, python_section, start_standalone_host
from trace_receivers import JaegerAgent, JaegerSpan, OtlpReceiver

#: The Python module the worker hosts (the scripted oracle, answering NOT_SPAM).
MODULE = "pyspam"
#: The Python module `glia serve` hosts itself (the same oracle).
LOCAL_MODULE = "pylocal"
#: glia's `telemetry.service_name`: its processes are `trace-coordinator` and `trace-worker`,
#: the Python hosts they start `trace-python-host`.
SERVICE = "trace"
#: The span a Python host opens around the module's callback.
HOST_SPAN = "module check_event_for_spam"
#: The servlet span Synapse opens for `PUT /rooms/{room}/send/...`.
SEND_SERVLET = "RoomSendEventRestServlet"
#: How long spans may take to arrive (a bound, not a measure: both exporters flush within 1 s).
PATIENCE_S = 30


def oracle(name: str, workdir: Path, placement: str, callback: str = "check_event_for_spam") -> dict[str, Any]:
    """A `modules:` entry: the scripted oracle as `name`, serving `callback` (it allows)."""
    return {
        "module": "scripted_synapse.ScriptedModule",
        "name": name,
        "placement": placement,
        "config": {
            "name": name,
            "script": str(workdir / "script.json"),
            "calls": str(workdir / f"{name}-calls.jsonl"),
            "callbacks": [callback],
        },
    }


def glia_config(
    port: int, nats_url: str, otlp: str, workdir: Path, modules: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The coordinator's and the worker's config: by default one Python module served over
    NATS and one hosted by the coordinator."""
    (workdir / "script.json").write_text("{}")
    if modules is None:
        modules = [oracle(MODULE, workdir, "nats"), oracle(LOCAL_MODULE, workdir, "local")]
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
        "modules": modules,
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


@dataclass
class Sent:
    """The traced message send: Synapse's request span and its trace id."""

    request: JaegerSpan
    trace_id: str


def traced_send(synapse: Synapse, jaeger: JaegerAgent, describe: Callable[[], str]) -> JaegerSpan:
    """alice (whose requests Synapse traces) sends a message to a room of hers; returns
    Synapse's request span for the send, which opened its trace."""
    alice = synapse.register("alice")
    room = alice.create_room(preset="public_chat")
    assert room.status == 200, room
    message = alice.send_text(room.body["room_id"], "traced")
    assert message.status == 200, message

    def servlet() -> JaegerSpan | None:
        return next((s for s in jaeger.spans if s.name == SEND_SERVLET), None)

    wait_until(lambda: servlet() is not None, PATIENCE_S, "Synapse's /send span", describe)
    request = servlet()
    assert request is not None
    return request


@pytest.fixture(scope="module")
def sent(deployment: Deployment) -> Sent:
    request = traced_send(deployment.synapse, deployment.jaeger, lambda: describe(deployment))
    return Sent(request, request.trace_id)


#: Spans received, by span id.
SpansById = dict[str, dict[str, Any]]


def in_trace(deployment: Deployment, trace_id: str) -> SpansById:
    """glia's and the hosts' spans in the trace, by span id."""
    return {s["span_id"]: s for s in deployment.otlp.spans() if s["trace_id"] == trace_id}


def host_span(deployment: Deployment, trace_id: str, module: str) -> dict[str, Any]:
    """The Python host's span for `module`'s callback in the trace, once it has arrived."""

    def find() -> dict[str, Any] | None:
        return next(
            (
                s
                for s in in_trace(deployment, trace_id).values()
                if s["name"] == HOST_SPAN and s["attributes"].get("glia.module") == module
            ),
            None,
        )

    wait_until(
        lambda: find() is not None, PATIENCE_S, f"the Python host's span for {module}", lambda: describe(deployment)
    )
    span = find()
    assert span is not None
    assert span["service_name"] == f"{SERVICE}-python-host", span
    assert span["attributes"].get("glia.callback") == "check_event_for_spam", span
    assert span["attributes"].get("glia.outcome") == "answer", span
    return span


def test_one_trace_from_synapses_request_span_to_the_python_module(deployment: Deployment, sent: Sent) -> None:
    trace_id = sent.trace_id

    # glia's spans in that trace: the coordinator's dispatch, the worker's span for the module,
    # and the worker's Python host's span for the callback, a child of the worker's.
    def worker_span() -> dict[str, Any] | None:
        return next(
            (
                s
                for s in in_trace(deployment, trace_id).values()
                if s["attributes"].get("glia.module") == MODULE and s["kind"] == "consumer"
            ),
            None,
        )

    wait_until(
        lambda: worker_span() is not None, PATIENCE_S, "the worker's span for the module", lambda: describe(deployment)
    )
    module_span = worker_span()
    assert module_span is not None
    assert module_span["service_name"] == f"{SERVICE}-worker", module_span
    assert module_span["name"] == f"process glia.v1.module.{MODULE}", module_span
    hosted = host_span(deployment, trace_id, MODULE)
    assert hosted["parent_span_id"] == module_span["span_id"], (hosted, module_span)

    # The host's span leads up through the worker and the coordinator to a span of Synapse's
    # (each process exports on its own schedule: the chain is read once all of it arrived).
    def glia_chain_now() -> list[str]:
        return chain(in_trace(deployment, trace_id), hosted["span_id"], lambda s: s["parent_span_id"])

    def complete() -> bool:
        return in_trace(deployment, trace_id)[glia_chain_now()[-1]]["name"] == "dispatch check_event_for_spam"

    wait_until(complete, PATIENCE_S, "the coordinator's spans above the module's", lambda: describe(deployment))
    spans = in_trace(deployment, trace_id)
    services = {s["service_name"] for s in spans.values()}
    assert {f"{SERVICE}-coordinator", f"{SERVICE}-worker", f"{SERVICE}-python-host"} <= services, services
    glia_chain = glia_chain_now()
    names = [spans[s]["name"] for s in glia_chain]
    assert glia_chain[1] == module_span["span_id"], names
    top = spans[glia_chain[-1]]
    assert top["name"] == "dispatch check_event_for_spam", names
    assert top["service_name"] == f"{SERVICE}-coordinator", top
    # The bridge propagated that span of Synapse's.
    assert_leads_up_to(deployment.jaeger, top["parent_span_id"], sent.request, lambda: describe(deployment))


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


def test_a_python_module_hosted_by_glia_serve_continues_the_coordinators_invocation_span(
    deployment: Deployment, sent: Sent
) -> None:
    hosted = host_span(deployment, sent.trace_id, LOCAL_MODULE)
    invocation = arrived(
        lambda: in_trace(deployment, sent.trace_id), hosted["parent_span_id"], lambda: describe(deployment)
    )
    assert invocation["name"] == f"invoke {LOCAL_MODULE}", invocation
    assert invocation["service_name"] == f"{SERVICE}-coordinator", invocation
    assert invocation["attributes"].get("glia.module") == LOCAL_MODULE, invocation
    dispatch = arrived(
        lambda: in_trace(deployment, sent.trace_id), invocation["parent_span_id"], lambda: describe(deployment)
    )
    assert dispatch["name"] == "dispatch check_event_for_spam", dispatch


def arrived(spans: Callable[[], SpansById], span_id: str, describe: Callable[[], str]) -> dict[str, Any]:
    """The span `span_id` of `spans()` (by span id), once the receiver has it: each process
    exports its spans in batches of its own, so a child's may come before its parent's."""
    wait_until(lambda: span_id in spans(), PATIENCE_S, f"the span {span_id}", describe)
    return spans()[span_id]


def test_a_standalone_host_on_nats_exports_its_span_as_the_otel_variables_say(glia_bin: Path, tmp_path: Path) -> None:
    """`glia-python-host serve`, started by hand, reads the standard OTEL_* variables (here OTLP
    over HTTP to the receiver's base URL) and continues the `traceparent` header of each
    invocation: its span is a child of the coordinator's `send` span, in the caller's trace."""
    started: list[Any] = []
    try:
        otlp = OtlpReceiver.start(tmp_path)
        started.append(otlp)
        nats = NatsServer.start(tmp_path)
        started.append(nats)
        port = free_port()
        name = "pyalone"
        config = glia_config(port, nats.url, otlp.grpc, tmp_path, [oracle(name, tmp_path, "nats", "user_may_invite")])
        config_path = tmp_path / "standalone.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        env = {**python_path_env(ORACLE), "OTEL_BSP_SCHEDULE_DELAY": "100"}
        host_env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.http, "OTEL_SERVICE_NAME": "standalone-host"}
        started.append(start_standalone_host(config_path, [name], tmp_path / "host.log", host_env))
        glia = Glia.start(glia_bin, tmp_path, config, port, env=env)
        started.append(glia)
        wait_until(lambda: module_info(glia.url, name)["state"] == "running", 30, "glia planning the module")
        trace_id = "5f1e0c2d3b4a69788796a5b4c3d2e1f0"
        invite = {"inviter": "@a:example.com", "invitee": "@b:example.com", "room_id": "!r:example.com"}
        headers = {"Authorization": f"Bearer {GLIA_TOKEN}", "traceparent": f"00-{trace_id}-0123456789abcdef-01"}
        status, _, raw = http_request("POST", f"{glia.url}/_glia/v1/callbacks/user_may_invite", invite, headers)
        assert status == 200, raw

        def spans() -> dict[str, dict[str, Any]]:
            return {s["span_id"]: s for s in otlp.spans() if s["trace_id"] == trace_id}

        def hosted() -> dict[str, Any] | None:
            return next((s for s in spans().values() if s["name"] == "module user_may_invite"), None)

        wait_until(lambda: hosted() is not None, PATIENCE_S, "the standalone host's span", otlp.process.tail)
        span = hosted()
        assert span is not None
        assert span["service_name"] == "standalone-host", span
        assert span["attributes"].get("glia.module") == name, span
        send = arrived(spans, span["parent_span_id"], otlp.process.tail)
        assert (send["name"], send["kind"]) == (f"send glia.v1.module.{name}", "producer"), send
        assert send["service_name"] == f"{SERVICE}-coordinator", send
    finally:
        for p in reversed(started):
            p.stop()


def describe(deployment: Deployment) -> str:
    """What both receivers got, and the logs' ends, for a failure message."""
    jaeger = "\n".join(f"  {s}" for s in deployment.jaeger.spans[-40:])
    otlp = "\n".join(f"  {s}" for s in deployment.otlp.spans()[-40:])
    processes = [p if isinstance(p, Process) else getattr(p, "process", None) for p in deployment.processes]
    logs = "\n".join(p.tail() for p in processes if isinstance(p, Process))
    return f"Jaeger spans:\n{jaeger}\nerrors: {deployment.jaeger.errors}\nOTLP spans:\n{otlp}\n{logs}"
