"""Tracing without I/O: off by default (nothing installed, envelopes keep traceparent=None), a consumer's span
continues the envelope's trace or starts a new one when the traceparent is garbage, and what a handler makes
carries the handler's span."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from contracts import REGISTRY, CharacterThresholdSet, Envelope, TraceContext
from contracts.subjects import event_subject
from services.runtime import tracing
from services.runtime.delivery import Action, HandlerTable, handle_delivery
from services.runtime.settings import RuntimeSettings
from services.runtime.writer import Stamp

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"


def envelope(traceparent: str | None) -> Envelope:
    stream = f"character-{uuid.uuid4().hex[:12]}"
    return Envelope.wrap(CharacterThresholdSet(character_id=stream.removeprefix("character-"), threshold=50.0),
                         event_id=uuid.uuid4(), stream=stream, occurred_at=datetime.now(UTC), correlation_id=stream,
                         trace=TraceContext(traceparent=traceparent))


async def deliver(incoming: Envelope) -> tuple[Action, list[Envelope]]:
    """Run one delivery through the shared delivery policy; returns its verdict and what the handler made."""
    table: HandlerTable = HandlerTable(REGISTRY, ignore_others=False)
    made: list[Envelope] = []

    @table.on(CharacterThresholdSet)
    async def handle(message: CharacterThresholdSet, cause: Envelope) -> None:
        stamp = Stamp.caused_by(cause, "test", datetime.now(UTC))
        made.append(stamp.wrap(message, cause.stream, 1, "event-0"))

    verdict = await handle_delivery(table, incoming.to_bytes(), event_subject(incoming.type, incoming.stream), 1,
                                    max_deliver=3, retry_delay_s=0.0, traced_as=("unit-consumer", "unit"))
    return verdict.action, made


def only_consumer_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    return span


async def test_off_by_default_nothing_is_installed_and_envelopes_keep_no_trace() -> None:
    settings = RuntimeSettings()
    assert settings.otel_exporter_otlp_endpoint is None and settings.otel_sample_ratio == 1.0
    assert tracing.setup(settings) is None
    assert not tracing.enabled()
    # Nothing global either: the API's default (proxy, no-op) provider is still the one in place.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    action, (made,) = await deliver(envelope(None))
    assert action is Action.ACK
    assert made.trace == TraceContext() and made.trace.traceparent is None
    assert tracing.trace_of_current_span() is None


async def test_off_a_trace_that_came_in_is_passed_on_unchanged() -> None:
    action, (made,) = await deliver(envelope(VALID))
    assert action is Action.ACK and made.trace.traceparent == VALID


async def test_on_the_consumer_span_continues_the_envelopes_trace(spans: InMemorySpanExporter) -> None:
    incoming = envelope(VALID)
    action, (made,) = await deliver(incoming)
    span = only_consumer_span(spans)
    assert action is Action.ACK
    assert f"{span.context.trace_id:032x}" == TRACE_ID and f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.name == "unit-consumer process character.threshold_set"
    attributes = dict(span.attributes)
    assert attributes["likeness.service"] == "unit" and attributes["likeness.outcome"] == "ack"
    assert attributes["messaging.message.id"] == str(incoming.event_id)
    assert attributes["likeness.correlation_id"] == incoming.correlation_id
    # What the handler made continues from the handler's span (a chain of services, not a star).
    assert made.trace.traceparent == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
    # Ids never depend on the trace: the same message handled untraced makes the same event id.
    tracing.uninstall()
    _, (again,) = await deliver(incoming)
    assert again.event_id == made.event_id


@pytest.mark.parametrize("garbage", ["not-a-traceparent", f"00-{'0' * 32}-{PARENT_ID}-01", f"zz-{TRACE_ID}-x-01",
                                     "", "00-" + "g" * 32 + "-" + "1" * 16 + "-01"])
async def test_a_malformed_traceparent_never_breaks_consumption_it_starts_a_new_trace(
    spans: InMemorySpanExporter, garbage: str
) -> None:
    action, (made,) = await deliver(envelope(garbage))
    span = only_consumer_span(spans)
    assert action is Action.ACK
    assert span.parent is None and span.context.trace_id != 0 and f"{span.context.trace_id:032x}" != TRACE_ID
    # (A new root's flags may say "random trace id" as well as "sampled": 03.)
    assert made.trace.traceparent.startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")


async def test_a_dead_lettered_message_marks_its_span_as_an_error(spans: InMemorySpanExporter) -> None:
    table: HandlerTable = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(CharacterThresholdSet)
    async def handle(message: CharacterThresholdSet, cause: Envelope) -> None:
        raise ValueError("broken handler")

    incoming = envelope(VALID)
    verdict = await handle_delivery(table, incoming.to_bytes(), event_subject(incoming.type, incoming.stream), 3,
                                    max_deliver=3, retry_delay_s=0.0, traced_as=("unit-consumer", "unit"))
    span = only_consumer_span(spans)
    assert verdict.action is Action.DEAD_LETTER
    assert span.attributes["likeness.outcome"] == "dead_letter" and not span.status.is_ok
    assert "broken handler" in (span.status.description or "")


def test_context_of_and_trace_of_current_span_round_trip(spans: InMemorySpanExporter) -> None:
    assert tracing.trace_of_current_span() is None  # no span is current
    parent = trace.get_current_span(tracing.context_of(TraceContext(traceparent=VALID))).get_span_context()
    assert f"{parent.trace_id:032x}" == TRACE_ID and parent.is_remote
    with tracing.span("work", attributes={"k": "v"}) as current:
        here = tracing.trace_of_current_span()
        ids = current.get_span_context()
        assert here is not None and here.traceparent.startswith(f"00-{ids.trace_id:032x}-{ids.span_id:016x}-")
        moved = tracing.traced(envelope(None))
        assert moved.trace == here
    assert tracing.context_of({"traceparent": 42, "tracestate": None}) is not None  # junk types are ignored


def test_an_sse_delivery_is_a_span_in_the_events_trace_linked_to_the_request(spans: InMemorySpanExporter) -> None:
    with tracing.span("GET /chains/{id}/events") as request:
        tracing.sent({"traceparent": VALID}, message_type="chain.completed", stream="chain-x", seq=7)
    sent = next(s for s in spans.get_finished_spans() if s.name == "sse send chain.completed")
    assert f"{sent.context.trace_id:032x}" == TRACE_ID and f"{sent.parent.span_id:016x}" == PARENT_ID
    assert [link.context.span_id for link in sent.links] == [request.get_span_context().span_id]
    assert sent.attributes["likeness.seq"] == 7 and sent.attributes["likeness.service"] == "gateway"


def test_setup_from_settings_names_the_service_and_samples_as_told() -> None:
    settings = RuntimeSettings(service_name="planner", otel_exporter_otlp_endpoint="http://127.0.0.1:9/",
                               otel_sample_ratio=0.25)
    provider = tracing.setup(settings)
    try:
        assert provider is not None and tracing.enabled()
        assert provider.resource.attributes["service.name"] == "likeness-planner"
        assert "TraceIdRatioBased{0.25}" in provider.sampler.get_description()
        # A second set-up in the same process (another service in a test) keeps the first provider.
        assert tracing.setup(settings) is None
    finally:
        tracing.shutdown(provider)
    assert not tracing.enabled()


@pytest.mark.parametrize(("field", "value"), [("otel_exporter_otlp_endpoint", "collector:4318"),
                                              ("otel_sample_ratio", 1.5), ("otel_export_timeout_s", 0)])
def test_bad_tracing_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        RuntimeSettings(**{field: value})


def test_an_empty_endpoint_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_OTEL_EXPORTER_OTLP_ENDPOINT", " ")
    assert RuntimeSettings().otel_exporter_otlp_endpoint is None


async def test_an_llm_call_is_a_client_span_naming_the_model_and_its_failure(spans: InMemorySpanExporter) -> None:
    from services.runtime.llm import LlmClient, LlmSettings, LlmUnavailable, sdk_httpx

    httpx = sdk_httpx()
    answers = [httpx.Response(200, json={"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": "hello"}}]}),
               httpx.Response(503, json={"error": {"message": "overloaded"}})]
    transport = httpx.MockTransport(lambda request: answers.pop(0))
    client = LlmClient(LlmSettings(base_url="http://llm.test/v1", model="qwen-test", api_key="k", timeout_s=5),
                       http_client=httpx.AsyncClient(transport=transport))
    messages = [{"role": "user", "content": "hi"}]
    assert (await client.complete(messages)).text == "hello"
    with pytest.raises(LlmUnavailable):
        await client.complete(messages)
    ok, failed = [s for s in spans.get_finished_spans() if s.name == "chat qwen-test"]
    assert ok.kind is SpanKind.CLIENT and ok.attributes["gen_ai.request.model"] == "qwen-test" and ok.status.is_ok
    assert not failed.status.is_ok and failed.events and failed.events[0].name == "exception"
