"""What tracing costs a consumer: one delivery through the shared delivery policy (decode, route, handle, a Stamp
of what it causes), with tracing off (the default) and on (an SDK provider; spans to an in-memory exporter, so
the figure is the SDK's own cost, not the network's). Prints microseconds per message and the ratio on/off.

    .venv/bin/python bench/tracing.py
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import REGISTRY, CharacterThresholdSet, Envelope, TraceContext
from contracts.subjects import event_subject
from services.runtime import tracing
from services.runtime.delivery import HandlerTable, handle_delivery
from services.runtime.writer import Stamp

MESSAGES, ROUNDS = 20_000, 3


async def per_message_us(raw: bytes, subject: str, table: HandlerTable) -> float:
    """The best of ROUNDS runs of MESSAGES deliveries, in microseconds per message."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(MESSAGES):
            await handle_delivery(table, raw, subject, 1, max_deliver=3, retry_delay_s=0.0,
                                  traced_as=("bench", "bench"))
        best = min(best, (time.perf_counter() - started) / MESSAGES * 1e6)
    return best


async def main() -> None:
    table: HandlerTable = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(CharacterThresholdSet)
    async def handle(message: CharacterThresholdSet, cause: Envelope) -> None:
        Stamp.caused_by(cause, "bench", cause.occurred_at).wrap(message, cause.stream, 1, "event-0")

    envelope = Envelope.wrap(CharacterThresholdSet(character_id="bench", threshold=50.0), event_id=uuid.uuid4(),
                             stream="character-bench", occurred_at=datetime.now(UTC), correlation_id="character-bench",
                             trace=TraceContext(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
    raw, subject = envelope.to_bytes(), event_subject(envelope.type, envelope.stream)
    off = await per_message_us(raw, subject, table)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        on = await per_message_us(raw, subject, table)
    finally:
        tracing.uninstall()
        provider.shutdown()
    print(f"delivery, tracing off: {off:8.1f} us/message")
    print(f"delivery, tracing on:  {on:8.1f} us/message (one consumer span, in-memory exporter)")
    print(f"ratio on/off: {on / off:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
