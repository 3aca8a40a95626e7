"""One delivery, folded from its `delivery-<id>` stream, and the pure decisions of its life.

    request -> claim attempt 1 -> attempted (delivered | rejected | retry -> claim attempt 2 -> ...)
                                 -> succeeded | failed

A replica claims the next attempt by appending `DeliveryClaimed` at the stream's version; only the
holder of a live claim may record its outcome. A claim whose lease has passed (its replica died or
hung) may be taken over. No I/O and no clock here: time, ids and the send's result are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from contracts import (
    Deliver,
    DeliveryAttempted,
    DeliveryClaimed,
    DeliveryFailed,
    DeliveryRequested,
    DeliverySucceeded,
    Destination,
    Event,
    Message,
)
from contracts.decision import Decision
from contracts.delivery_rpc import AttemptView, DeliveryView
from services.runtime.ids import derived_id

__all__ = [
    "DeliveryState",
    "RetryPolicy",
    "SendResult",
    "claim",
    "conclude",
    "delivery_id_for",
    "evolve",
    "give_up",
    "message_id_for",
    "replay_id_for",
    "view_of",
]

Outcome = Literal["delivered", "retry", "rejected"]


@dataclass(frozen=True)
class SendResult:
    """How a destination answered one attempt."""

    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    # What the destination asked for (Retry-After, Telegram's retry_after).
    retry_after_s: float | None = None
    duration_ms: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """The wait after each failed attempt (the last one repeats), within a window from the request."""

    schedule_s: tuple[float, ...]
    window_s: float

    def next_attempt_at(self, attempt: int, now: datetime, requested_at: datetime,
                        retry_after_s: float | None) -> datetime | None:
        """When attempt `attempt + 1` is due, or None when that would be past the window."""
        wait = self.schedule_s[min(attempt, len(self.schedule_s)) - 1]
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        due = now + timedelta(seconds=wait)
        return due if due <= requested_at + timedelta(seconds=self.window_s) else None


@dataclass(frozen=True)
class DeliveryState:
    version: int = 0
    request: DeliveryRequested | None = None
    # Attempts whose outcome is recorded.
    attempts: int = 0
    # The claim on the attempt in flight, if any.
    claim: DeliveryClaimed | None = None
    ended: Literal["delivered", "failed"] | None = None

    @property
    def next_attempt(self) -> int:
        return self.attempts + 1


def evolve(state: DeliveryState, message: Message, seq: int | None) -> DeliveryState:
    version = state.version + 1 if seq is None else seq
    match message:
        case DeliveryRequested():
            state = replace(state, request=message)
        case DeliveryClaimed():
            state = replace(state, claim=message)
        case DeliveryAttempted():
            state = replace(state, attempts=max(state.attempts, message.attempt), claim=None)
        case DeliverySucceeded():
            state = replace(state, ended="delivered", claim=None)
        case DeliveryFailed():
            state = replace(state, ended="failed", claim=None)
    return replace(state, version=version)


def claim(state: DeliveryState, *, attempt: int, worker: str, now: datetime, lease_s: float) -> list[Event]:
    """Claim attempt `attempt` for `worker`: nothing when it is done, stale, or held under a live lease."""
    if state.request is None or state.ended is not None or attempt < state.next_attempt:
        return []
    held = state.claim
    if held is not None and held.lease_until > now:
        return []
    return [DeliveryClaimed(delivery_id=state.request.delivery_id, attempt=state.next_attempt, worker=worker,
                            lease_until=now + timedelta(seconds=lease_s),
                            takeover_of=held.worker if held is not None else None)]


def _holds(state: DeliveryState, worker: str) -> bool:
    return state.ended is None and state.claim is not None and state.claim.worker == worker


def conclude(state: DeliveryState, *, worker: str, result: SendResult, now: datetime,
             policy: RetryPolicy) -> Decision:
    """Record the attempt `worker` holds and what follows: the end, or the next attempt's command."""
    if not _holds(state, worker):
        return Decision()  # the claim lapsed and another replica took the attempt over
    assert state.request is not None and state.claim is not None
    request, attempt = state.request, state.claim.attempt
    due = None
    if result.outcome == "retry":
        due = policy.next_attempt_at(attempt, now, request.requested_at, result.retry_after_s)
    attempted = DeliveryAttempted(delivery_id=request.delivery_id, attempt=attempt, worker=worker,
                                  outcome=result.outcome, status_code=result.status_code,
                                  error=result.error, duration_ms=result.duration_ms, retry_at=due)
    if result.outcome == "delivered":
        return Decision([attempted, DeliverySucceeded(delivery_id=request.delivery_id, attempts=attempt)])
    if result.outcome == "rejected":
        reason = f"the destination refused it ({result.error or result.status_code}); it is not retried"
        return Decision([attempted, DeliveryFailed(delivery_id=request.delivery_id, attempts=attempt, reason=reason,
                                                   cause="rejected")])
    if due is None:
        reason = (f"no attempt succeeded within {policy.window_s:g}s of the request; the last: "
                  f"{result.error or result.status_code}")
        return Decision([attempted, DeliveryFailed(delivery_id=request.delivery_id, attempts=attempt, reason=reason,
                                                   cause="expired")])
    return Decision([attempted], [Deliver(delivery_id=request.delivery_id, attempt=attempt + 1, not_before=due)])


def give_up(state: DeliveryState, *, worker: str, reason: str) -> list[Event]:
    """End the delivery `worker` holds without an attempt: its destination no longer exists."""
    if not _holds(state, worker):
        return []
    assert state.request is not None
    return [DeliveryFailed(delivery_id=state.request.delivery_id, attempts=state.attempts, reason=reason,
                           cause="destination_gone")]


def delivery_id_for(event_id: UUID, destination: Destination) -> UUID:
    """The automatic delivery of one chain event to one destination: one id, however often the event is read."""
    return derived_id(event_id, f"delivery:{destination.key}")


def replay_id_for(request_id: UUID, destination: Destination) -> UUID:
    return derived_id(request_id, f"replay:{destination.key}")


def message_id_for(delivery_id: UUID) -> str:
    """The `webhook-id` of a delivery's message; replays of it keep the original's."""
    return f"msg_{delivery_id.hex}"


def view_of(entries: Sequence[tuple[datetime, Message]]) -> DeliveryView | None:
    """The delivery as the log shows it, from its stream's (occurred_at, message) pairs in order."""
    request: DeliveryRequested | None = None
    attempts: list[AttemptView] = []
    status: Literal["pending", "delivered", "failed"] = "pending"
    failure = None
    for at, message in entries:
        match message:
            case DeliveryRequested():
                request = message
            case DeliveryAttempted():
                attempts.append(AttemptView(attempt=message.attempt, at=at, worker=message.worker,
                                            outcome=message.outcome, status_code=message.status_code,
                                            error=message.error, duration_ms=message.duration_ms,
                                            retry_at=message.retry_at))
            case DeliverySucceeded():
                status = "delivered"
            case DeliveryFailed():
                status, failure = "failed", message.reason
    if request is None:
        return None
    return DeliveryView(delivery_id=request.delivery_id, status=status, channel=request.destination.channel,
                        destination=request.destination, event_id=request.event_id, event_type=request.event_type,
                        chain_id=request.chain_id, message_id=request.message_id, trigger=request.trigger,
                        replay_of=request.replay_of, requested_at=request.requested_at, attempts=attempts,
                        failure=failure)
