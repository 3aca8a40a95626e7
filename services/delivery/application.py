"""The delivery application: owe chain events to destinations, and make each attempt (load, decide, send, append).

    DeliveryError
    └── ChainUnknown   the chain event names a chain the log does not have

`owe` appends `DeliveryRequested` with the first `Deliver` command (through the outbox, in one
transaction), once per event and destination. `attempt` claims the attempt a `Deliver` asks for,
sends, and records the outcome with what follows (the end, or the next `Deliver`, due after the
back-off); a claim held by a live replica is waited for, one whose lease passed is taken over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from prometheus_client import Counter, Histogram

from contracts import (
    REGISTRY,
    ChainFailed,
    ChainRequested,
    Deliver,
    DeliveryRequested,
    Destination,
    Envelope,
    ImageRef,
)
from contracts.decision import Decision
from contracts.streams import chain_stream, delivery_stream, delivery_user_stream
from services.delivery import attempts, destinations
from services.delivery.attempts import DeliveryState, RetryPolicy, SendResult
from services.delivery.destinations import Destinations
from services.delivery.payloads import ChainFacts, google_chat_message, telegram_text, webhook_body
from services.delivery.senders import HttpSender, TelegramSender
from services.delivery.settings import DeliverySettings
from services.delivery.signing import endpoint_secret, signed_headers
from services.runtime.blobs import BlobError, BlobStore
from services.runtime.delivery import RetryLater
from services.runtime.eventstore import EventStore
from services.runtime.ids import derived_id
from services.runtime.links import image_link
from services.runtime.writer import Stamp, StreamWriter

__all__ = ["ChainUnknown", "Deliveries", "DeliveryError", "Owed"]

log = logging.getLogger(__name__)

ATTEMPTS = Counter("likeness_delivery_attempts_total", "Delivery attempts by channel and outcome (delivered, retry, "
                   "rejected)", ["channel", "outcome"])
ENDED = Counter("likeness_delivery_ended_total", "Deliveries ended, by channel and result (delivered, failed)",
                ["channel", "result"])
TAKEOVERS = Counter("likeness_delivery_takeovers_total", "Attempts taken over from a replica whose lease lapsed")
SEND_SECONDS = Histogram("likeness_delivery_send_seconds", "Time of one attempt's request", ["channel"],
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LATENCY = Histogram("likeness_delivery_latency_seconds", "From the delivery's request to its success", ["channel"],
                    buckets=(0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 21600, 86400))

Clock = Callable[[], datetime]
# A lease is waited out with this much to spare, so the retry finds it lapsed.
_LEASE_SLACK_S = 0.25


class DeliveryError(Exception):
    """Root of the delivery application's errors."""


class ChainUnknown(DeliveryError):
    """The log has no such chain (or no such event in it)."""


class Owed:
    """What `owe` needs to request one delivery."""

    def __init__(self, *, destination: Destination, user_id: str, event_id: UUID, event_type: str, chain_id: UUID,
                 delivery_id: UUID, message_id: str, trigger: str = "automatic", replay_of: UUID | None = None) -> None:
        self.destination, self.user_id, self.event_id, self.event_type = destination, user_id, event_id, event_type
        self.chain_id, self.delivery_id, self.message_id = chain_id, delivery_id, message_id
        self.trigger, self.replay_of = trigger, replay_of


class Deliveries:
    """Shared by the consumers and the management requests of one process."""

    def __init__(self, settings: DeliverySettings, store: EventStore, blobs: Callable[[], BlobStore],
                 http: HttpSender, telegram: TelegramSender, clock: Clock, worker: str | None = None) -> None:
        self.settings, self.store, self._blobs, self.http, self.telegram = settings, store, blobs, http, telegram
        self.clock = clock
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.users = StreamWriter(store, Destinations(), destinations.evolve)
        self.streams = StreamWriter(store, DeliveryState(), attempts.evolve, cache_size=2000)
        self.policy = RetryPolicy(tuple(settings.delivery_retry_schedule_s), settings.delivery_retry_window_s)

    # Owing: a chain event's deliveries, replays and sends on request.

    async def chain_owner(self, chain_id: UUID) -> ChainRequested:
        replayed = await self.store.replay(chain_stream(chain_id), REGISTRY, after_version=0)
        if not replayed or not isinstance(replayed[0][1], ChainRequested):
            raise ChainUnknown(f"the log has no chain {chain_id}")
        return replayed[0][1]

    async def on_chain_event(self, envelope: Envelope, chain_id: UUID) -> int:
        """Owe the event to each destination of the chain's owner that wants it; how many are owed."""
        owner = await self.chain_owner(chain_id)
        wanted = destinations.wanted(await self.users.load(delivery_user_stream(owner.user_id)), envelope.type)
        for destination in wanted:
            delivery_id = attempts.delivery_id_for(envelope.event_id, destination)
            await self.owe(Owed(destination=destination, user_id=owner.user_id, event_id=envelope.event_id,
                                event_type=envelope.type, chain_id=chain_id, delivery_id=delivery_id,
                                message_id=attempts.message_id_for(delivery_id)), cause=envelope)
        return len(wanted)

    async def owe(self, owed: Owed, *, cause: Envelope | None = None) -> None:
        """Request the delivery (once: the same request again appends nothing) with its first attempt."""
        now = self.clock()
        request = DeliveryRequested(delivery_id=owed.delivery_id, user_id=owed.user_id, destination=owed.destination,
                                    event_id=owed.event_id, event_type=owed.event_type, chain_id=owed.chain_id,
                                    message_id=owed.message_id, trigger=owed.trigger, replay_of=owed.replay_of,
                                    requested_at=now)

        def decide(state: DeliveryState) -> Decision:
            if state.request is not None:
                return Decision()
            return Decision([request], [Deliver(delivery_id=owed.delivery_id, attempt=1)])

        if cause is not None:
            stamp = Stamp.caused_by(cause, owed.destination.key, now, correlation_id=chain_stream(owed.chain_id))
        else:
            stamp = Stamp(lambda _v, what: derived_id(owed.delivery_id, what), now, chain_stream(owed.chain_id),
                          actor=owed.user_id)
        await self.streams.write(delivery_stream(owed.delivery_id), decide, stamp)

    # Attempting.

    async def attempt(self, command: Deliver, envelope: Envelope) -> None:
        """Make the attempt `command` asks for, unless it is done, stale, not due, or another replica holds it."""
        now = self.clock()
        if command.not_before is not None and command.not_before > now:
            raise RetryLater(f"attempt {command.attempt} is due at {command.not_before.isoformat()}",
                             (command.not_before - now).total_seconds())
        stream = delivery_stream(command.delivery_id)
        claimed = await self.streams.write(
            stream, lambda state: Decision(attempts.claim(state, attempt=command.attempt, worker=self.worker, now=now,
                                                          lease_s=self.settings.delivery_lease_s)),
            self._stamp(command.delivery_id, envelope, now))
        state = claimed.state
        if not claimed.new:
            held = state.claim
            if state.ended is None and held is not None and command.attempt >= state.next_attempt:
                wait = (held.lease_until - self.clock()).total_seconds() + _LEASE_SLACK_S
                raise RetryLater(f"attempt {held.attempt} is held by {held.worker} until {held.lease_until.isoformat()}",
                                 wait)
            if state.request is None:
                log.warning("no delivery %s in the log; dropping its attempt %d", command.delivery_id, command.attempt)
            return
        assert state.request is not None and state.claim is not None
        if state.claim.takeover_of:
            TAKEOVERS.inc()
            log.info("delivery %s: attempt %d taken over from %s (its lease lapsed)", command.delivery_id,
                     state.claim.attempt, state.claim.takeover_of)
        await self._send_and_record(state, envelope)

    async def _send_and_record(self, state: DeliveryState, envelope: Envelope) -> None:
        request = state.request
        assert request is not None and state.claim is not None
        channel = request.destination.channel
        outcome = await self._send(request)
        now = self.clock()
        worker = self.worker

        # Decided again on the stream as it is, should it have moved: only the claim's holder records.
        def decide(current: DeliveryState) -> Decision:
            if isinstance(outcome, str):
                return Decision(attempts.give_up(current, worker=worker, reason=outcome))
            return attempts.conclude(current, worker=worker, result=outcome, now=now, policy=self.policy)

        if isinstance(outcome, SendResult):
            ATTEMPTS.labels(channel, outcome.outcome).inc()
            SEND_SECONDS.labels(channel).observe(outcome.duration_ms / 1000)
        written = await self.streams.write(delivery_stream(request.delivery_id), decide,
                                           self._stamp(request.delivery_id, envelope, now))
        if not written.new:
            log.warning("delivery %s: attempt %d outlived its lease and was taken over; its outcome is not recorded "
                        "(raise LIKENESS_DELIVERY_LEASE_S above the longest send)", request.delivery_id,
                        state.claim.attempt)
            return
        self._report(request, state.claim.attempt, outcome, written.state, now)

    def _report(self, request: DeliveryRequested, attempt: int, outcome: SendResult | str, after: DeliveryState,
                now: datetime) -> None:
        channel = request.destination.channel
        if after.ended is not None:
            ENDED.labels(channel, after.ended).inc()
        if after.ended == "delivered":
            LATENCY.labels(channel).observe((now - request.requested_at).total_seconds())
            log.info("delivery %s (%s, %s) delivered on attempt %d", request.delivery_id, channel, request.event_type,
                     attempt)
        elif after.ended == "failed":
            why = outcome if isinstance(outcome, str) else outcome.error or outcome.status_code
            log.info("delivery %s (%s, %s) failed after attempt %d: %s", request.delivery_id, channel,
                     request.event_type, attempt, why)
        elif isinstance(outcome, SendResult):
            log.info("delivery %s (%s) attempt %d will be retried: %s", request.delivery_id, channel, attempt,
                     outcome.error or outcome.status_code)

    def _stamp(self, delivery_id: UUID, cause: Envelope, now: datetime) -> Stamp:
        # Ids name the position and the worker: two replicas deciding at one version make different events,
        # so the store's expected version (not its idempotency) settles which claim stands.
        worker = self.worker

        def ids(version: int, what: str) -> UUID:
            return derived_id(delivery_id, f"{version}:{worker}:{what}")

        return Stamp(ids, now, cause.correlation_id, str(cause.event_id), cause.actor, cause.trace)

    # Sending.

    async def facts(self, request: DeliveryRequested) -> ChainFacts | None:
        records = await self.store.read_stream(chain_stream(request.chain_id))
        if not records:
            return None
        first = records[0].envelope.open(REGISTRY)
        for record in records:
            if record.envelope.event_id == request.event_id and isinstance(first, ChainRequested):
                env = record.envelope
                return ChainFacts(chain_id=request.chain_id, character_id=first.character_id,
                                  request_text=first.request_text, event_id=env.event_id,
                                  occurred_at=env.occurred_at, event=env.open(REGISTRY))
        return None

    def link(self, facts: ChainFacts) -> Callable[[ImageRef], str]:
        """Signed links to the event's images, expiring a fixed time after the event (the same on every retry)."""
        settings = self.settings
        expires = int((facts.occurred_at + timedelta(seconds=settings.delivery_image_link_ttl_s)).timestamp())
        secret = settings.image_link_secret.get_secret_value()
        return lambda image: image_link(settings.public_base_url, secret, image.sha256, expires)

    async def _send(self, request: DeliveryRequested) -> SendResult | str:
        """The destination's answer; or, as text, why there is nothing to send to or nothing to send."""
        facts = await self.facts(request)
        if facts is None:
            return f"the chain event {request.event_id} is not in the log"
        dest = await self.users.load(delivery_user_stream(request.user_id))
        channel = request.destination.channel
        if channel == "telegram":
            return await self._telegram(dest, facts)
        if channel == "google_chat":
            if not dest.google_chat_url:
                return "Google Chat is no longer linked"
            body = google_chat_message(facts, self.link(facts))
            return await self.http.post(_with_request_id(dest.google_chat_url, request.message_id),
                                        _json(body), {})
        hook = dest.webhooks.get(request.destination.endpoint_id)
        if hook is None:
            return "the webhook endpoint was deleted"
        secret = endpoint_secret(self.settings.delivery_secret_key.get_secret_value(), hook.endpoint_id,
                                 hook.generation)
        body = webhook_body(facts, self.link(facts))
        return await self.http.post(hook.url, body, signed_headers(secret, request.message_id, self.clock(), body))

    async def _telegram(self, dest: Destinations, facts: ChainFacts) -> SendResult | str:
        if not self.telegram.configured:
            return "this server has no Telegram bot (LIKENESS_DELIVERY_TELEGRAM_BOT_TOKEN is not set)"
        if not dest.telegram_chat_id:
            return "Telegram is no longer linked"
        image = facts.image
        if image is None or isinstance(facts.event, ChainFailed):
            return await self.telegram.send_message(dest.telegram_chat_id, telegram_text(facts))
        try:
            photo = await self._blobs().get(image.sha256)
        except BlobError as exc:
            return f"the picture is not in the blob store: {exc}"
        return await self.telegram.send_photo(dest.telegram_chat_id, photo, telegram_text(facts))


def _with_request_id(url: str, request_id: str) -> str:
    """Google Chat's `requestId`: a retried message with the same id is created once, not twice."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "requestId"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("requestId", request_id)])))


def _json(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
