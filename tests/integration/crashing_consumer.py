"""A consumer process for the redelivery test.

It handles `character.threshold_set` events of one stream by appending a derived event with a
deterministic id, and on the first delivery of a message it dies before acking.
"""

from __future__ import annotations

import asyncio
import os
import sys

from contracts import CharacterPersonaUpdated, CharacterThresholdSet, Envelope
from contracts.subjects import EVENTS_STREAM
from services.runtime.bus import Bus
from services.runtime.database import create_engine
from services.runtime.eventstore import ANY_VERSION, EventStore
from services.runtime.consumers import Consumer
from services.runtime.ids import derived_id
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ConsumerSpec


async def main(durable: str, filter_subject: str) -> None:
    settings = RuntimeSettings(service_name="crashtest")
    store = EventStore(create_engine(settings))
    bus = Bus(settings)
    events = Consumer(ConsumerSpec(durable, EVENTS_STREAM, filter_subject, ack_wait_s=settings.ack_wait_s),
                      ignore_others=True)

    @events.on(CharacterThresholdSet)
    async def on_threshold(message: CharacterThresholdSet, envelope: Envelope) -> None:
        echo_stream = f"{envelope.stream}-echo"
        echo = Envelope.wrap(
            CharacterPersonaUpdated(character_id=message.character_id, persona=f"threshold {message.threshold}"),
            event_id=derived_id(envelope.event_id, "echo"),
            stream=echo_stream,
            occurred_at=envelope.occurred_at,
            correlation_id=envelope.correlation_id,
            causation_id=str(envelope.event_id),
        )
        result = await store.append(echo_stream, ANY_VERSION, [echo])
        print(f"handled idempotent={result.idempotent}", flush=True)
        if not result.idempotent:
            os._exit(3)  # the crash: state changed, message not acked

    bus.consume(events)
    await bus.start()
    await asyncio.sleep(float(os.environ.get("CRASHTEST_RUN_S", "30")))
    await bus.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
