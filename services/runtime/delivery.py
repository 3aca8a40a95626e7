"""Typed handler tables and what to do with each delivery: handle, ignore, retry, wait or dead-letter.

A failure of the infrastructure (the database or the bus away: services.runtime.faults) is never the
message's fault: the verdict is WAIT, and the bus keeps the message and runs it again once the
infrastructure is back, without counting a delivery. Data that Postgres refuses (a NUL byte in text)
is the message's fault for good: dead-lettered at once.

    HandlerError
    ├── TransientError   try again later (the message is redelivered after a delay)
    ├── RetryLater       not due yet: run it again after exactly this delay (a schedule, not a failure)
    └── PoisonMessage    this message can never succeed (dead-lettered at once, with the reason)

`Verdict` is pure policy: given what arrived and how it went, it says what the bus must do,
so the rules are tested without NATS.

Dead letters are read back by `handle_dead_letter`: the handler gets the original bytes and the
reason, and whatever it cannot handle is dropped (acked and logged), never dead-lettered again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from contracts.base import Message
from contracts.envelope import Envelope
from contracts.errors import ContractError
from contracts.registry import MessageRegistry
from contracts.subjects import command_subject, event_subject
from services.runtime import tracing
from services.runtime.faults import is_bad_data, is_infrastructure_failure
from services.runtime.logs import log_context

__all__ = [
    "Action",
    "DeadLetter",
    "DeadLetterHandler",
    "HandlerError",
    "HandlerTable",
    "PoisonMessage",
    "RetryLater",
    "TransientError",
    "Verdict",
    "handle_dead_letter",
    "handle_delivery",
]

M = TypeVar("M", bound=Message)
Handler = Callable[[M, Envelope], Awaitable[None]]

_REASON, _SUBJECT, _CONSUMER, _DELIVERIES = (
    "Likeness-Reason", "Likeness-Original-Subject", "Likeness-Consumer", "Likeness-Deliveries")
_MAX_REASON_CHARS = 1000


class HandlerError(Exception):
    """Raised by a handler to steer what happens to the message."""


class TransientError(HandlerError):
    """A dependency is down or busy; the same message may succeed later."""


class RetryLater(HandlerError):
    """The message is not due yet (a back-off, or another worker's lease): redeliver it after `delay_s`.

    Unlike a TransientError nothing failed, so the delay is the handler's, not the growing retry delay;
    each redelivery still counts toward max_deliver, so a handler asks for it once or twice per message.
    """

    def __init__(self, reason: str, delay_s: float) -> None:
        super().__init__(reason)
        self.delay_s = max(0.0, delay_s)


class PoisonMessage(HandlerError):
    """The message is well-formed but can never be handled; the text says why."""


class Action(Enum):
    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    # Acked unhandled, with the reason logged: what a dead-letter consumer gives up on, so nothing loops.
    DROP = "drop"
    # The database or the bus is away: keep the message (un-acked, in progress) and run it again later.
    WAIT = "wait"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""
    delay_s: float = 0.0
    # A RETRY the handler scheduled (RetryLater): expected, so the bus does not warn about it.
    scheduled: bool = False


class HandlerTable(Generic[M]):
    """Handlers of one consumer, by message class.

    `ignore_others`: an event consumer sees every type of its filter and skips those it has
    no handler for; a command consumer dead-letters them, since nobody else will act.
    """

    def __init__(self, registry: MessageRegistry, *, ignore_others: bool) -> None:
        self.registry = registry
        self.ignore_others = ignore_others
        self._handlers: dict[type[Message], Handler] = {}

    def on(self, model: type[M]) -> Callable[[Handler[M]], Handler[M]]:
        def register(func: Handler[M]) -> Handler[M]:
            self._handlers[model] = func
            return func

        return register

    def get(self, model: type[Message]) -> Handler | None:
        return self._handlers.get(model)

    @property
    def types(self) -> tuple[type[Message], ...]:
        return tuple(self._handlers)


@dataclass(frozen=True)
class DeadLetter:
    """A message a consumer gave up on: its original bytes, and who gave up on it, where and why."""

    data: bytes
    reason: str
    original_subject: str
    consumer: str
    deliveries: int

    def headers(self) -> dict[str, str]:
        """The NATS headers that carry everything but the bytes."""
        return {_REASON: self.reason[:_MAX_REASON_CHARS], _SUBJECT: self.original_subject,
                _CONSUMER: self.consumer, _DELIVERIES: str(self.deliveries)}

    @classmethod
    def read(cls, data: bytes, headers: Mapping[str, str] | None) -> DeadLetter:
        """The dead letter as stored; missing or garbled headers read as unknown rather than failing."""
        headers = headers or {}
        deliveries = headers.get(_DELIVERIES, "")
        return cls(data=data, reason=headers.get(_REASON) or "no reason given",
                   original_subject=headers.get(_SUBJECT, ""), consumer=headers.get(_CONSUMER, ""),
                   deliveries=int(deliveries) if deliveries.isdigit() else 0)


DeadLetterHandler = Callable[[DeadLetter], Awaitable[None]]


async def handle_delivery(
    table: HandlerTable,
    raw: bytes,
    subject: str,
    deliveries: int,
    *,
    max_deliver: int,
    retry_delay_s: float,
    traced_as: tuple[str, str] = ("", ""),
) -> Verdict:
    """Decode, route and run one delivery; never raises, always says what to do with it.

    `traced_as`: (durable consumer, service) naming the span the handler runs in when tracing is on."""
    if deliveries > max_deliver:
        # Earlier deliveries never answered: the handler keeps dying or hanging on this one.
        return Verdict(Action.DEAD_LETTER, f"delivered {deliveries} times without an answer (crash or timeout)")
    try:
        envelope = Envelope.from_bytes(raw)
        message = envelope.open(table.registry)
    except ContractError as exc:
        return Verdict(Action.DEAD_LETTER, f"{type(exc).__name__}: {exc}")
    expected = _subject_for(message, envelope)
    if expected is not None and expected != subject:
        return Verdict(Action.DEAD_LETTER, f"type {envelope.type!r} does not belong on subject {subject!r}")
    handler = table.get(type(message))
    if handler is None:
        if table.ignore_others:
            return Verdict(Action.ACK)
        return Verdict(Action.DEAD_LETTER, f"no handler for {envelope.type!r} on this consumer")
    # What the handler logs names the chain (or conversation) and the trace it belongs to.
    consumer, service = traced_as
    with tracing.consuming(envelope, consumer=consumer, service=service, subject=subject,
                           deliveries=deliveries) as span:
        # The trace the handler's log lines name: its span's when traced (a new one if the message had none).
        trace_id = _trace_id(envelope.trace.traceparent) if span is None else f"{span.get_span_context().trace_id:032x}"
        with log_context(correlation_id=envelope.correlation_id, message_type=envelope.type, trace_id=trace_id):
            verdict = await _run(lambda: handler(message, envelope), deliveries, max_deliver, retry_delay_s,
                                 give_up=Action.DEAD_LETTER)
        tracing.settled(span, verdict.action.value, verdict.reason)
        return verdict


def _trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` (version-traceid-parentid-flags)."""
    parts = traceparent.split("-") if traceparent else []
    return parts[1] if len(parts) == 4 else None


async def handle_dead_letter(
    handler: DeadLetterHandler,
    letter: DeadLetter,
    deliveries: int,
    *,
    max_deliver: int,
    retry_delay_s: float,
) -> Verdict:
    """Run a dead-letter handler on one delivery; like `handle_delivery`, but it never answers
    DEAD_LETTER: a letter that cannot be handled is dropped, so no two services bounce it forever.
    The bytes are the handler's to read, since they may be exactly what could not be read before."""
    if deliveries > max_deliver:
        return Verdict(Action.DROP, f"delivered {deliveries} times without an answer (crash or timeout)")
    return await _run(lambda: handler(letter), deliveries, max_deliver, retry_delay_s, give_up=Action.DROP)


async def _run(call: Callable[[], Awaitable[None]], deliveries: int, max_deliver: int, retry_delay_s: float, *,
               give_up: Action) -> Verdict:
    """Run a handler: ACK, RETRY with a growing delay, or `give_up` on poison or the last delivery."""
    try:
        await call()
    except RetryLater as exc:
        return Verdict(Action.RETRY, str(exc), delay_s=exc.delay_s, scheduled=True)
    except PoisonMessage as exc:
        return Verdict(give_up, f"refused by handler: {exc}")
    except Exception as exc:  # noqa: BLE001 - any failure is retried, then given up on, never crashes the consumer
        reason = f"{type(exc).__name__}: {exc}"
        if is_infrastructure_failure(exc):
            return Verdict(Action.WAIT, reason)
        if is_bad_data(exc):
            return Verdict(give_up, f"the database refused the message's data: {reason}")
        if deliveries >= max_deliver:
            return Verdict(give_up, f"failed {deliveries} times, last: {reason}")
        return Verdict(Action.RETRY, reason, delay_s=retry_delay_s * deliveries)
    return Verdict(Action.ACK)


def _subject_for(message: Message, envelope: Envelope) -> str | None:
    if message.kind == "command":
        return command_subject(envelope.type)
    if message.kind == "event":
        return event_subject(envelope.type, envelope.stream)
    return None
