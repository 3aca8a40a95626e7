"""A service's connection to NATS: FastStream subscribers on durable JetStream consumers,
publishing, live (core NATS) traffic and dead letters.

Malformed or unknown messages are dead-lettered with the reason and acked, so they never
block the ones behind them; a failing handler is retried with a delay, then dead-lettered.
A dead-letter consumer (`consume_dead_letters`) reads other services' dead letters with their
reasons; what it cannot handle is dropped with a log line, never dead-lettered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import nats
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from nats.js import JetStreamContext
from prometheus_client import Counter

from contracts.base import Message
from contracts.envelope import Envelope
from contracts.subjects import DEAD_LETTERS_STREAM, command_subject, dead_letter_subject, event_subject, live_subject
from services.runtime import pull_timeouts  # noqa: F401  (installs the fix before any consumer pulls)
from services.runtime import publish_errors  # noqa: F401  (installs the fix before anything publishes)
from services.runtime import tracing
from services.runtime.faults import is_infrastructure_failure
from services.runtime.metrics import DEAD_LETTERS
from services.runtime.consumers import Consumer
from services.runtime.delivery import (
    Action,
    DeadLetter,
    DeadLetterHandler,
    Verdict,
    handle_dead_letter,
    handle_delivery,
)
from services.runtime.settings import RuntimeSettings, nats_servers
from services.runtime.streams import ConsumerSpec, ensure_all
from services.runtime.subscriber_start import start_subscribers

__all__ = ["Bus", "provision"]

log = logging.getLogger(__name__)

HANDLED = Counter("likeness_messages_total", "Deliveries by consumer and outcome", ["consumer", "outcome"])
WAITS = Counter("likeness_infrastructure_waits_total",
                "Re-runs of a message held while the database or the bus was away", ["consumer"])

# Back-off of a message held while the infrastructure is away: soon at first, then every 10 s at most.
_FIRST_WAIT_S = 0.5
_MAX_WAIT_S = 10.0


class Bus:
    """One per process; consumers are declared before `start`."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self._settings = settings
        self.broker = NatsBroker(
            settings.nats_servers,
            name=settings.service_name,
            connect_timeout=int(max(1, settings.nats_timeout_s)),
            graceful_timeout=settings.graceful_timeout_s,
            # Per-message "received/processed" lines belong at DEBUG: at INFO they cost more than a decision.
            log_level=logging.DEBUG,
            # Our logger, not FastStream's default one (which colours its lines unconditionally, even into
            # files); its records then take the process's one format (services.runtime.logs).
            logger=logging.getLogger("faststream"),
            # Handlers take the raw message (see `_the_message`) and decode it themselves, so
            # FastStream's dependency injection would only add a thread hop per message.
            apply_types=False,
        )
        self._consumers: list[ConsumerSpec] = []
        self._waiting = 0

    @property
    def js(self) -> JetStreamContext:
        return self.broker.connection.jetstream(timeout=self._settings.nats_timeout_s)

    @property
    def nc(self) -> nats.NATS:
        return self.broker.connection

    def consume(self, consumer: Consumer) -> None:
        """Run the consumer's handlers for every message of its durable JetStream consumer."""
        settings = self._settings

        async def verdict_on(msg: StreamMessage, deliveries: int) -> Verdict:
            return await handle_delivery(consumer, msg.body, msg.raw_message.subject, deliveries,
                                         max_deliver=settings.max_deliver, retry_delay_s=settings.retry_delay_s,
                                         traced_as=(consumer.spec.durable, settings.service_name))

        self._subscribe(consumer.spec, verdict_on, consumer.workers)

    def consume_dead_letters(self, spec: ConsumerSpec, handler: DeadLetterHandler, *, workers: int = 1) -> None:
        """Run `handler` for every dead letter of the durable consumer `spec` (on the dead-letters stream).

        The letter's bytes are neither decoded nor checked against its subject here: that is the
        handler's business. Failures are retried like any handler's, then the letter is dropped.
        """
        settings = self._settings

        async def verdict_on(msg: StreamMessage, deliveries: int) -> Verdict:
            letter = DeadLetter.read(msg.body, msg.raw_message.headers)
            verdict = await handle_dead_letter(handler, letter, deliveries, max_deliver=settings.max_deliver,
                                               retry_delay_s=settings.retry_delay_s)
            if verdict.action is Action.DROP:
                log.error("%s: dropping a dead letter of %s (%s): %s", spec.durable, letter.original_subject or "?",
                          letter.reason, verdict.reason)
            return verdict

        self._subscribe(spec, verdict_on, workers)

    def _subscribe(
        self, spec: ConsumerSpec, verdict_on: Callable[[StreamMessage, int], Awaitable[Verdict]], workers: int
    ) -> None:
        """Pull from `spec` and settle each message as `verdict_on` says: ack, retry later or dead-letter."""
        self._consumers.append(spec)

        async def on_message(msg: StreamMessage) -> None:
            raw = msg.raw_message
            deliveries = raw.metadata.num_delivered if raw.metadata else 1
            # While the handler runs (a render, a face check, an LLM plan, a wait for the database), JetStream
            # is told it is in progress: a short ack wait then only ever expires for a worker that died.
            heartbeat = asyncio.ensure_future(_keep_in_progress(raw, spec.ack_wait_s))
            try:
                verdict = await self._verdict_when_infrastructure_allows(spec, msg, deliveries, verdict_on)
            except asyncio.CancelledError:
                # Shutting down mid-handler: hand the message back now rather than after ack_wait.
                await asyncio.shield(_settle(msg.nack(), spec, raw.subject))
                raise
            finally:
                heartbeat.cancel()
            HANDLED.labels(spec.durable, verdict.action.value).inc()
            if verdict.action is Action.RETRY:
                log.log(logging.DEBUG if verdict.scheduled else logging.WARNING, "%s: retrying %s in %.1fs: %s",
                        spec.durable, raw.subject, verdict.delay_s, verdict.reason)
                await _settle(msg.nack(delay=verdict.delay_s), spec, raw.subject)
                return
            if verdict.action is Action.DEAD_LETTER:
                try:
                    await self.dead_letter(msg.body, subject=raw.subject, reason=verdict.reason,
                                           consumer=spec.durable, deliveries=deliveries, origin=_origin(raw))
                except Exception as exc:
                    if not is_infrastructure_failure(exc):
                        raise
                    # Not acked either: JetStream redelivers it, and it is judged again.
                    log.warning("%s: could not dead-letter %s while NATS is away (%s); it will come back",
                                spec.durable, raw.subject, exc)
                    return
            await _settle(msg.ack(), spec, raw.subject)

        subscriber = self.broker.subscriber(
            spec.filter_subject,
            stream=JStream(spec.stream, declare=False),
            durable=spec.durable,
            config=spec.config(),
            # One message a pull, handed to the `workers` at once: nats-py's batch fetch (batch > 1) held a
            # lone message for hundreds of ms at times (bench/scale.py, chain start S1), one never waits.
            pull_sub=PullSub(batch_size=1, timeout=1.0),
            ack_policy=AckPolicy.MANUAL,
            decoder=_the_message,
            max_workers=workers,
            title=spec.durable,
        )
        subscriber(on_message)

    async def _verdict_when_infrastructure_allows(
        self, spec: ConsumerSpec, msg: StreamMessage, deliveries: int,
        verdict_on: Callable[[StreamMessage, int], Awaitable[Verdict]],
    ) -> Verdict:
        """The handler's verdict; while the database or the bus is away (WAIT), the same delivery is run
        again with capped back-off for as long as it takes, and the process reports itself not ready."""
        verdict = await verdict_on(msg, deliveries)
        if verdict.action is not Action.WAIT:
            return verdict
        subject = msg.raw_message.subject
        log.warning("%s: %s waits for the database or the bus (%s); the message is kept and tried again",
                    spec.durable, subject, verdict.reason)
        started, delay = time.monotonic(), _FIRST_WAIT_S
        self._waiting += 1
        try:
            while verdict.action is Action.WAIT:
                WAITS.labels(spec.durable).inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_WAIT_S)
                verdict = await verdict_on(msg, deliveries)
        finally:
            self._waiting -= 1
        log.info("%s: %s handled after waiting %.1fs for the infrastructure", spec.durable, subject,
                 time.monotonic() - started)
        return verdict

    @property
    def waiting(self) -> int:
        """Handlers now waiting for the database or the bus to come back."""
        return self._waiting

    async def connect(self) -> None:
        """Connect without consuming yet, so start-up hooks can use NATS (object store, ...)."""
        await self.broker.connect()

    async def start(self) -> None:
        """Provision streams and consumers, then start pulling messages."""
        await self.broker.connect()
        await ensure_all(self.js, self._consumers, replicas=self._settings.stream_replicas)
        await start_subscribers(self.broker)

    async def stop(self) -> None:
        """Stop pulling, let in-flight handlers finish (graceful timeout), then drain."""
        await self.broker.stop()

    async def publish(self, envelope: Envelope, message: Message) -> None:
        """Publish a message that is not in the log (stateless services' results, commands)."""
        subject = (
            command_subject(envelope.type) if message.kind == "command" else event_subject(envelope.type, envelope.stream)
        )
        with tracing.publishing(subject, envelope, self._settings.service_name):
            # What is published while a message is handled continues that message's trace.
            envelope = tracing.traced(envelope)
            headers = {"Nats-Msg-Id": str(envelope.event_id), **_trace_headers(envelope)}
            await self.js.publish(subject, envelope.to_bytes(), headers=headers, timeout=self._settings.nats_timeout_s)

    async def publish_live(self, envelope: Envelope) -> None:
        """Ephemeral traffic: core NATS, fire and forget, lost if nobody listens."""
        envelope = tracing.traced(envelope)
        await self.nc.publish(live_subject(envelope.type, envelope.correlation_id), envelope.to_bytes(),
                              headers=_trace_headers(envelope) or None)

    async def dead_letter(
        self, raw: bytes, *, subject: str, reason: str, consumer: str, deliveries: int, origin: str
    ) -> None:
        headers = DeadLetter(data=raw, reason=reason, original_subject=subject, consumer=consumer,
                             deliveries=deliveries).headers()
        # Dead-lettering the same delivery twice (a crash between publish and ack) stores it once.
        headers["Nats-Msg-Id"] = f"dlq:{consumer}:{origin}"
        log.error("%s: dead-lettering %s: %s", consumer, subject, reason)
        await self.js.publish(dead_letter_subject(self._settings.service_name), raw, headers=headers,
                              stream=DEAD_LETTERS_STREAM, timeout=self._settings.nats_timeout_s)
        DEAD_LETTERS.labels(consumer).inc()

    async def ready(self) -> bool:
        """Connected to NATS, and no handler is waiting for the database or the bus to come back."""
        return self._waiting == 0 and await self.broker.ping(timeout=1.0)


async def _keep_in_progress(raw: nats.aio.msg.Msg, ack_wait_s: float) -> None:
    """Tell JetStream the message is still being worked on, three times per ack wait, until cancelled."""
    while True:
        await asyncio.sleep(ack_wait_s / 3)
        try:
            await raw.in_progress()
        except Exception as exc:  # noqa: BLE001 - NATS away: the message may come back later, that is all
            log.debug("in-progress ack of %s failed: %s", raw.subject, exc)


async def _settle(ack: Awaitable[None], spec: ConsumerSpec, subject: str) -> None:
    """Ack or nak; while NATS is away the message simply comes back after its ack wait."""
    try:
        await ack
    except Exception as exc:
        if not is_infrastructure_failure(exc):
            raise
        log.warning("%s: could not settle %s while NATS is away (%s); it will be delivered again",
                    spec.durable, subject, exc)


def _trace_headers(envelope: Envelope) -> dict[str, str]:
    """The envelope's W3C trace context as NATS headers, for tools that read headers, not envelopes."""
    trace = envelope.trace
    if trace.traceparent is None:
        return {}
    return {"traceparent": trace.traceparent, **({"tracestate": trace.tracestate} if trace.tracestate else {})}


def _the_message(message: StreamMessage) -> StreamMessage:
    """FastStream decoder that hands the handler the message itself: we decode envelopes ourselves."""
    return message


def _origin(raw: nats.aio.msg.Msg) -> str:
    meta = raw.metadata
    return f"{meta.stream}:{meta.sequence.stream}" if meta else raw.subject


async def provision(nats_url: str, *, timeout_s: float = 10.0, replicas: int = 1) -> None:
    """Create or update the JetStream streams (used by `likeness up` and deploy jobs); `nats_url` may list
    a cluster's nodes, comma-separated."""
    nc = await nats.connect(nats_servers(nats_url), connect_timeout=timeout_s, max_reconnect_attempts=1)
    try:
        await ensure_all(nc.jetstream(timeout=timeout_s), replicas=replicas, wait_s=timeout_s)
    finally:
        await nc.drain()


