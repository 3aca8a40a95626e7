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


def _stream(name: str, kind: str, retention: RetentionPolicy, *, max_age_days: int) -> StreamConfig:
    """A file-backed stream of every `likeness.<kind>.>` subject."""
    return StreamConfig(name=name, subjects=[f"{PREFIX}.{kind}.>"], retention=retention, storage=StorageType.FILE,
                        max_age=max_age_days * _DAY, duplicate_window=_DEDUPE_WINDOW_S)


STREAMS = (
    # Events are kept (limits retention): every interested service has its own durable.
    _stream(EVENTS_STREAM, "evt", RetentionPolicy.LIMITS, max_age_days=30),
    # A command is done once one replica acks it, so the stream forgets it (work queue).
    _stream(COMMANDS_STREAM, "cmd", RetentionPolicy.WORK_QUEUE, max_age_days=7),
    _stream(DEAD_LETTERS_STREAM, "dlq", RetentionPolicy.LIMITS, max_age_days=90),
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
