"""One picture asked for in the chat is one trace, over real NATS, Postgres and HTTP: the gateway's request span,
then chat, planner, renderer, facecheck and planner again, each continuing the one before, and the gateway's SSE
stream sending the chain's events to the user.

Every service runs as its real Runtime in this process (renderer: the draft engine; facecheck: a face model
that sees one face in every image, so the chain completes); the spans go to an in-memory exporter. With an
endpoint set, a service's spans reach an OTLP/HTTP collector (a fake one on a real socket).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.chat.service import build_runtime as chat_runtime
from services.chat.settings import ChatSettings
from services.facecheck.encoder import DetectedFace
from services.facecheck.service import build_runtime as facecheck_runtime
from services.facecheck.settings import FacecheckSettings
from services.gateway.settings import GatewaySettings
from services.planner.service import build_runtime as planner_runtime
from services.planner.settings import PlannerSettings
from services.renderer.service import build_runtime as renderer_runtime
from services.renderer.settings import RendererSettings
from services.runtime import tracing
from services.runtime.settings import RuntimeSettings
from tests.conftest import Backends
from tests.fakes.gateway_world import RunningGateway
from tests.fakes.otlp_collector import OtlpCollector
from tests.integration.gateway_helpers import chat, create_character, sse_events
from tests.runtimes import consumers_removed_after, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SERVICES = ("gateway", "chat", "planner", "renderer", "facecheck")


class OneFace:
    """A face model that sees one large face in every image, always the same one (score 100)."""

    name = "test/one-face"

    def encode(self, image: np.ndarray) -> list[DetectedFace]:
        height, width = image.shape[:2]
        return [DetectedFace(x=width * 0.1, y=height * 0.1, width=width * 0.8, height=height * 0.8, det_score=0.99,
                             landmarks=np.zeros((5, 2), dtype=np.float32), embedding=np.ones(8, dtype=np.float32))]

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(100 * np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
async def system(backends: Backends, spans: InMemorySpanExporter) -> AsyncIterator[RunningGateway]:
    """Every service of a chain, in this process, tracing into `spans`; their durable consumers removed after."""
    common = dict(nats_url=backends.nats_url, database_url=backends.database_url, environment="test",
                  ack_wait_s=10.0, retry_delay_s=0.2, max_deliver=3, graceful_timeout_s=5.0)
    async with consumers_removed_after(backends.nats_url), AsyncExitStack() as stack:
        await stack.enter_async_context(running(chat_runtime(ChatSettings(**common, chat_offline_delay_s=0.0))))
        await stack.enter_async_context(running(planner_runtime(PlannerSettings(**common))))
        await stack.enter_async_context(running(renderer_runtime(RendererSettings(**common))))
        await stack.enter_async_context(running(facecheck_runtime(FacecheckSettings(**common),
                                                                  encoder_factory=lambda _settings: OneFace())))
        gateway = RunningGateway(GatewaySettings(**common, http_host="127.0.0.1", gateway_anonymous_image_limit=None,
                                                 gateway_rate_per_s=1000.0, gateway_rate_burst=1000.0))
        await gateway.start()
        stack.push_async_callback(gateway.stop)
        yield gateway


def hex_id(value: int) -> str:
    return f"{value:032x}"


def service_of(span: ReadableSpan) -> str | None:
    return (span.attributes or {}).get("likeness.service")


def ancestry(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """`span` and its parents up to the root, root first."""
    path = [span]
    while path[-1].parent is not None:
        parent = by_id.get(path[-1].parent.span_id)
        assert parent is not None, f"{path[-1].name}: its parent span was never recorded"
        path.append(parent)
    return path[::-1]


def collapsed(path: list[ReadableSpan]) -> list[str]:
    """The services along a path of spans, each run of one service written once."""
    services: list[str] = []
    for span in path:
        service = service_of(span)
        if service is not None and (not services or services[-1] != service):
            services.append(service)
    return services


async def eventually(check: Callable[[], object], timeout_s: float = 20.0) -> None:
    """Until `check()` stops raising AssertionError (spans of handlers still finishing)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                check()
                return
            except AssertionError:
                await asyncio.sleep(0.1)


async def test_one_picture_asked_for_in_chat_is_one_trace_through_every_service(
    system: RunningGateway, spans: InMemorySpanExporter
) -> None:
    async with httpx.AsyncClient(base_url=system.url, timeout=30.0) as client:
        character = await create_character(client, name="Tia")
        spans.clear()
        events = await chat(client, character_id=character["id"], text="send me a picture at the beach")
        image = next(data for event, data in events if event == "image")
        chain_id = image["chain_id"]
        async with client.stream("GET", image["events_url"]) as response:
            assert response.status_code == 200
            seen = [e.event async for e in _until_the_end(sse_events(response.aiter_lines()))]
        assert (await client.get("/readyz")).status_code == 200
    assert seen[-1] == "chain.completed", seen

    def server_span(route: str) -> ReadableSpan:
        found = [s for s in spans.get_finished_spans()
                 if s.kind is SpanKind.SERVER and (s.attributes or {}).get("http.route") == route]
        assert len(found) == 1, f"{len(found)} finished server spans of {route}"
        return found[0]

    def request_span() -> ReadableSpan:
        return server_span("/chat/stream")

    def one_trace() -> None:
        finished = spans.get_finished_spans()
        trace_id = request_span().context.trace_id
        chain_spans = [s for s in finished if (s.attributes or {}).get("likeness.correlation_id") in
                       (f"chain-{chain_id}", f"conversation-{events[0][1]['conversation_id']}")]
        # Every span about this chain and this conversation belongs to the request's trace.
        assert chain_spans and {hex_id(s.context.trace_id) for s in chain_spans} == {hex_id(trace_id)}
        mine = [s for s in finished if s.context.trace_id == trace_id]
        assert {service_of(s) for s in mine} >= set(SERVICES), {service_of(s) for s in mine}
        by_id = {s.context.span_id: s for s in mine}
        completed = [s for s in mine if s.name == "sse send chain.completed"]
        assert completed, "no SSE span for chain.completed in the request's trace"
        path = ancestry(completed[0], by_id)
        assert path[0] is request_span()
        services = collapsed(path)
        assert services[:7] == ["gateway", "chat", "planner", "renderer", "planner", "facecheck", "planner"], services
        assert services[-2:] == ["planner", "gateway"], services
        server_span("/chains/{chain_id}/events")  # the SSE request's own span has ended too

    await eventually(one_trace)
    finished = spans.get_finished_spans()
    trace_id = request_span().context.trace_id
    mine = [s for s in finished if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in mine}
    # The adapters' calls are children of the consumer spans of their services.
    render = next(s for s in mine if s.name.startswith("render "))
    score = next(s for s in mine if s.name == "face score")
    assert by_id[render.parent.span_id].kind is SpanKind.CONSUMER and service_of(render) == "renderer"
    assert by_id[score.parent.span_id].kind is SpanKind.CONSUMER and service_of(score) == "facecheck"
    # The SSE spans link to the request that streamed them: GET /chains/{id}/events.
    sse = next(s for s in mine if s.name == "sse send chain.completed")
    (link,) = sse.links
    assert link.context.span_id == server_span("/chains/{chain_id}/events").context.span_id
    consumer = next(s for s in mine if s.kind is SpanKind.CONSUMER and service_of(s) == "planner")
    assert consumer.attributes["messaging.system"] == "nats" and consumer.attributes["likeness.outcome"] == "ack"
    # Probes make no spans (one was just asked).
    assert not [s for s in finished if (s.attributes or {}).get("http.route") in ("/healthz", "/readyz")]


async def _until_the_end(events: AsyncIterator) -> AsyncIterator:
    async for event in events:
        yield event
        if event.event in ("chain.completed", "chain.failed"):
            return


async def test_with_an_endpoint_set_spans_are_exported_over_otlp_http_named_by_service() -> None:
    with OtlpCollector() as collector:
        settings = RuntimeSettings(service_name="renderer", otel_exporter_otlp_endpoint=collector.url)
        provider = tracing.setup(settings)
        assert provider is not None
        try:
            with tracing.span("render qwen_edit"):
                pass
        finally:
            # Shutting down flushes the batch: the span reaches the collector before this returns.
            await asyncio.to_thread(tracing.shutdown, provider)
        assert collector.spans == [("likeness-renderer", "render qwen_edit")]
    assert not tracing.enabled()
