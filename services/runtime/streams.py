"""JetStream streams and durable consumers, provisioned idempotently at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from contracts.subjects import COMMANDS_STREAM, DEAD_LETTERS_STREAM, EVENTS_STREAM, PREFIX

__all__ = ["ConsumerSpec", "STREAMS", "ensure_consumer", "ensure_streams"]

log = logging.getLogger(__name__)

_DAY = 24 * 3600

# The de-duplication window bounds how late a relay restart may republish without doubles.
_DEDUPE_WINDOW_S = 10 * 60

STREAMS = (
    # Events are kept (limits retention): every interested service has its own durable.
    StreamConfig(
        name=EVENTS_STREAM,
        subjects=[f"{PREFIX}.evt.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * _DAY,
        duplicate_window=_DEDUPE_WINDOW_S,
    ),
    # A command is done once one replica acks it, so the stream forgets it (work queue).
    StreamConfig(
        name=COMMANDS_STREAM,
        subjects=[f"{PREFIX}.cmd.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=7 * _DAY,
        duplicate_window=_DEDUPE_WINDOW_S,
    ),
    StreamConfig(
        name=DEAD_LETTERS_STREAM,
        subjects=[f"{PREFIX}.dlq.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=90 * _DAY,
        duplicate_window=_DEDUPE_WINDOW_S,
    ),
)


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer; every replica of a service binds the same one and shares its load."""

    durable: str
    stream: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_ack_pending: int = 1000

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            # The service decides when to give up (and dead-letters), so JetStream never stops by itself.
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
        )


async def ensure_streams(js: JetStreamContext) -> None:
    """Create the streams, or bring an existing one's settings up to date."""
    for config in STREAMS:
        try:
            await js.add_stream(config=config)
        except BadRequestError:
            await js.update_stream(config=config)


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create the durable, or update its editable settings (ack wait, limits) to the spec's."""
    try:
        await js.add_consumer(spec.stream, config=spec.config())
    except BadRequestError as exc:
        # A setting the server cannot change in place (e.g. the filter): keep the consumer as it is.
        log.warning("consumer %s kept with its existing settings: %s", spec.durable, exc)
