"""OpenTelemetry tracing: set-up from settings, W3C trace context in and out of envelopes, and the spans of
consumers, publishes, SSE deliveries and adapter calls (render, face score, LLM).

Off by default: no SDK provider is installed, `enabled()` is False and every helper returns at once, so
envelopes keep whatever trace their cause had (none, unless an upstream process traces). On
(`LIKENESS_OTEL_EXPORTER_OTLP_ENDPOINT`): a TracerProvider whose Resource says service.name=likeness-<service>,
a BatchSpanProcessor and the OTLP/HTTP exporter. The provider is this module's own, not the API's global
one, so a test can install an in-memory one (`install`) and take it away again (`uninstall`).

Several services may share one process (tests), and so one provider: every span made here also names its
service in the `likeness.service` attribute. See services/runtime/TRACING.md.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts.envelope import Envelope, TraceContext
from services.runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "consuming",
    "context_of",
    "enabled",
    "install",
    "instrument_app",
    "publishing",
    "sent",
    "settled",
    "setup",
    "shutdown",
    "span",
    "trace_of_current_span",
    "traced",
    "uninstall",
]

log = logging.getLogger(__name__)

SERVICE = "likeness.service"
_PROPAGATOR = TraceContextTextMapPropagator()
# Probes and scrapes would be most of the gateway's spans and tell nothing about a request.
_EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$"

_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
# The service whose message is being handled: child spans (render, face score, LLM) name it too.
_service: contextvars.ContextVar[str | None] = contextvars.ContextVar("likeness_trace_service", default=None)


def enabled() -> bool:
    """Whether spans are recorded in this process (a provider is installed)."""
    return _tracer is not None


def install(provider: TracerProvider) -> None:
    """Record spans with `provider` from now on (set-up, or a test's in-memory exporter)."""
    global _provider, _tracer
    _provider, _tracer = provider, provider.get_tracer("likeness")


def uninstall() -> None:
    """Back to no tracing at all (the provider is not shut down: that is its owner's business)."""
    global _provider, _tracer
    _provider, _tracer = None, None


def setup(settings: RuntimeSettings) -> TracerProvider | None:
    """Install an OTLP-exporting provider when the settings ask for one and none is installed yet; returns it
    (the caller shuts it down at exit) or None when tracing stays off or another provider is in place."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint is None or _provider is not None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    # Like OTEL_EXPORTER_OTLP_ENDPOINT, the setting is the collector's base URL; traces go to /v1/traces.
    url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
    timeout_s = settings.otel_export_timeout_s
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"likeness-{settings.service_name}"}),
        # A sampled-out parent stays sampled out downstream, so a trace is whole or absent.
        sampler=ParentBased(TraceIdRatioBased(settings.otel_sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=timeout_s),
                                                   export_timeout_millis=timeout_s * 1000))
    install(provider)
    log.info("tracing on: spans of %s go to %s (sample ratio %g)", settings.service_name, url,
             settings.otel_sample_ratio)
    return provider


def shutdown(provider: TracerProvider | None) -> None:
    """Flush and stop a provider `setup` returned (blocking: at most the export timeout)."""
    if provider is None:
        return
    if provider is _provider:
        uninstall()
    provider.shutdown()


def instrument_app(app: FastAPI, service: str) -> None:
    """A server span per HTTP request of `app` (not probes or scrapes), when tracing is on."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    def name_service(span: Span, _scope: dict[str, Any]) -> None:
        if span.is_recording():
            span.set_attribute(SERVICE, service)

    # No span per ASGI send/receive: an SSE stream would make one per frame.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls=_EXCLUDED_URLS,
                                       server_request_hook=name_service, exclude_spans=["receive", "send"])


def context_of(trace_context: TraceContext | Mapping[str, Any] | None) -> Context:
    """The W3C context an envelope's `trace` carries; an empty one (a new trace) when absent or malformed."""
    if trace_context is None:
        return Context()
    carrier = trace_context.model_dump() if isinstance(trace_context, TraceContext) else trace_context
    return _PROPAGATOR.extract({k: v for k, v in carrier.items() if isinstance(v, str)})


def trace_of_current_span() -> TraceContext | None:
    """The current span's context as an envelope carries it; None when no span is current."""
    if _tracer is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return TraceContext(traceparent=carrier.get("traceparent"), tracestate=carrier.get("tracestate"))


def traced(envelope: Envelope) -> Envelope:
    """`envelope` carrying the current span's context (what was made while handling continues that trace)."""
    current = trace_of_current_span()
    if current is None or current == envelope.trace:
        return envelope
    return envelope.model_copy(update={"trace": current})


def consuming(envelope: Envelope, *, consumer: str, service: str, subject: str,
              deliveries: int = 1) -> AbstractContextManager[Span | None]:
    """A CONSUMER span "<consumer> process <type>" around one delivery's handling, parented on the envelope's
    trace (a new trace when it has none or a malformed one); None, and nothing done, when tracing is off."""
    if _tracer is None:
        return nullcontext()
    return _consuming(_tracer, envelope, consumer=consumer, service=service, subject=subject, deliveries=deliveries)


@contextmanager
def _consuming(tracer: trace.Tracer, envelope: Envelope, *, consumer: str, service: str, subject: str,
               deliveries: int) -> Iterator[Span]:
    attributes = {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": subject,
        "messaging.consumer.group.name": consumer,
        "messaging.message.id": str(envelope.event_id),
        "messaging.message.conversation_id": envelope.correlation_id,
        "likeness.correlation_id": envelope.correlation_id,
        "likeness.message_type": envelope.type,
        "likeness.deliveries": deliveries,
        SERVICE: service,
    }
    token = _service.set(service)
    try:
        with tracer.start_as_current_span(f"{consumer} process {envelope.type}", context=context_of(envelope.trace),
                                          kind=SpanKind.CONSUMER, attributes=attributes) as current:
            yield current
    finally:
        _service.reset(token)


def settled(current: Span | None, outcome: str, reason: str = "") -> None:
    """Record on a `consuming` span what became of the message (ack, retry, dead_letter, ...)."""
    if current is None or not current.is_recording():
        return
    current.set_attribute("likeness.outcome", outcome)
    if outcome == "dead_letter":
        current.set_status(Status(StatusCode.ERROR, reason))


def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL,
         attributes: Mapping[str, Any] | None = None) -> AbstractContextManager:
    """A child span of the current one around an adapter call (render, face score, LLM); a no-op when off."""
    if _tracer is None:
        return nullcontext()
    service = _service.get()
    merged = dict(attributes or {})
    if service is not None:
        merged[SERVICE] = service
    return _tracer.start_as_current_span(name, kind=kind, attributes=merged)


def publishing(subject: str, envelope: Envelope, service: str) -> AbstractContextManager:
    """A PRODUCER span around one JetStream publish; a no-op when off."""
    if _tracer is None:
        return nullcontext()
    return _tracer.start_as_current_span(f"send {envelope.type}", kind=SpanKind.PRODUCER, attributes={
        "messaging.system": "nats", "messaging.operation.type": "send", "messaging.destination.name": subject,
        "messaging.message.id": str(envelope.event_id), "likeness.correlation_id": envelope.correlation_id,
        "likeness.message_type": envelope.type, SERVICE: _service.get() or service})


def sent(trace_context: TraceContext | Mapping[str, Any] | None, *, message_type: str, stream: str,
         seq: int | None, service: str = "gateway") -> None:
    """Mark that an SSE stream sent an event to its client: a short span in the event's own trace, linked to
    the current span (the SSE request's), so the chain's trace ends at the client."""
    if _tracer is None:
        return
    request = trace.get_current_span().get_span_context()
    links = [Link(request)] if request.is_valid else []
    attributes: dict[str, Any] = {"likeness.message_type": message_type, "likeness.correlation_id": stream,
                                  SERVICE: service}
    if seq is not None:
        attributes["likeness.seq"] = seq
    _tracer.start_span(f"sse send {message_type}", context=context_of(trace_context), kind=SpanKind.PRODUCER,
                       attributes=attributes, links=links).end()

