"""Typed handler tables and what to do with each delivery: handle, ignore, retry or dead-letter.

    HandlerError
    ├── TransientError   try again later (the message is redelivered after a delay)
    └── PoisonMessage    this message can never succeed (dead-lettered at once, with the reason)

`Verdict` is pure policy: given what arrived and how it went, it says what the bus must do,
so the rules are tested without NATS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from contracts.base import Message
from contracts.envelope import Envelope
from contracts.errors import ContractError
from contracts.registry import MessageRegistry
from contracts.subjects import command_subject, event_subject

__all__ = ["Action", "HandlerError", "HandlerTable", "PoisonMessage", "TransientError", "Verdict", "handle_delivery"]

M = TypeVar("M", bound=Message)
Handler = Callable[[M, Envelope], Awaitable[None]]


class HandlerError(Exception):
    """Raised by a handler to steer what happens to the message."""


class TransientError(HandlerError):
    """A dependency is down or busy; the same message may succeed later."""


class PoisonMessage(HandlerError):
    """The message is well-formed but can never be handled; the text says why."""


class Action(Enum):
    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""
    delay_s: float = 0.0


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


async def handle_delivery(
    table: HandlerTable,
    raw: bytes,
    subject: str,
    deliveries: int,
    *,
    max_deliver: int,
    retry_delay_s: float,
) -> Verdict:
    """Decode, route and run one delivery; never raises, always says what to do with it."""
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
    try:
        await handler(message, envelope)
    except PoisonMessage as exc:
        return Verdict(Action.DEAD_LETTER, f"refused by handler: {exc}")
    except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered, never crashes the consumer
        reason = f"{type(exc).__name__}: {exc}"
        if deliveries >= max_deliver:
            return Verdict(Action.DEAD_LETTER, f"failed {deliveries} times, last: {reason}")
        return Verdict(Action.RETRY, reason, delay_s=retry_delay_s * deliveries)
    return Verdict(Action.ACK)


def _subject_for(message: Message, envelope: Envelope) -> str | None:
    if message.kind == "command":
        return command_subject(envelope.type)
    if message.kind == "event":
        return event_subject(envelope.type, envelope.stream)
    return None
