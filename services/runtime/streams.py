"""JetStream streams and durable consumers, provisioned idempotently at start-up."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from contracts.subjects import COMMANDS_STREAM, DEAD_LETTERS_STREAM, EVENTS_STREAM, PREFIX
from services.runtime.faults import Outage, is_infrastructure_failure

__all__ = ["ConsumerSpec", "STREAMS", "ensure_all", "ensure_consumer", "ensure_replicas", "ensure_streams"]

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


async def ensure_streams(js: JetStreamContext, *, replicas: int = 1) -> None:
    """Create the streams with `replicas` copies each, or bring an existing one's settings up to date;
    its copies are raised to `replicas` (a cluster adds them), never lowered (see `ensure_replicas`)."""
    for config in STREAMS:
        try:
            await js.add_stream(config=dataclasses.replace(config, num_replicas=replicas))
        except BadRequestError:
            current = (await js.stream_info(config.name)).config.num_replicas or 1
            await js.update_stream(config=dataclasses.replace(config, num_replicas=max(current, replicas)))


async def ensure_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Raise an existing stream (one made by a library: the blob bucket's) to `replicas` copies if it has fewer.

    Never lowered: a process left with the default setting of 1 (a CLI, a tool, a service deployed without
    the cluster's config) must not strip a cluster's copies; lower them on purpose with `nats stream edit`.
    """
    config = (await js.stream_info(stream)).config
    if (config.num_replicas or 1) < replicas:
        log.info("stream %s: %s -> %d replicas", stream, config.num_replicas or 1, replicas)
        await js.update_stream(config=dataclasses.replace(config, num_replicas=replicas))


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create the durable, or update its editable settings (ack wait, limits) to the spec's."""
    try:
        await js.add_consumer(spec.stream, config=spec.config())
    except BadRequestError as exc:
        # A setting the server cannot change in place (e.g. the filter): keep the consumer as it is.
        log.warning("consumer %s kept with its existing settings: %s", spec.durable, exc)


async def ensure_all(js: JetStreamContext, consumers: Iterable[ConsumerSpec] = (), *, replicas: int = 1,
                     wait_s: float = 60.0) -> None:
    """`ensure_streams`, then `ensure_consumer` for each spec; while JetStream cannot answer, tried again for
    up to `wait_s`.

    A cluster answers its API with 503s ("insufficient resources", "JetStream system temporarily
    unavailable"), no responders or timeouts while it elects a leader or moves a stream to more replicas
    (another replica starting at the same moment may be doing just that): a service must not die of that.
    """
    outage = Outage("JetStream provisioning", log)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await ensure_streams(js, replicas=replicas)
            for spec in consumers:
                await ensure_consumer(js, spec)
            outage.over()
            return
        except Exception as exc:
            if not is_infrastructure_failure(exc) or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(outage.failed(exc))
