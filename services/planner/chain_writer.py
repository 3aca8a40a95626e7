"""The planner's application layer: load a chain, decide, append with the expected version (the shared
`services.runtime.writer`: a conflict re-reads and re-decides). Event and command ids are derived from
the message that caused them, so handling the same message twice appends nothing new: either the saga
sees the result is stale, or the store sees the ids are already there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

from contracts import ChainCompleted, ChainFailed, ChainPlanned, ChainRefused, Envelope, Message
from contracts.decision import Decision
from contracts.streams import chain_stream
from services.planner import metrics
from services.planner.saga.decide import Trigger, decide
from services.planner.saga.state import ChainState, evolve
from services.runtime.eventstore import EventStore
from services.runtime.writer import Stamp, StreamWriter

__all__ = ["ChainService"]

log = logging.getLogger(__name__)

TriggerFor = Callable[[ChainState], Awaitable[Trigger | None]]


class ChainService:
    """Runs the saga on `chain-*` streams through the shared writer (its bounded cache of folded states)."""

    def __init__(self, store: EventStore, clock: Callable[[], datetime], *, cache_size: int = 10_000) -> None:
        self._writer = StreamWriter(store, ChainState(), evolve, cache_size=cache_size)
        self._clock = clock

    async def handle(self, chain_id: UUID, cause: Envelope, trigger_for: TriggerFor) -> Decision:
        """Decide on what `cause` brought and append the outcome; returns what the log holds as decided
        (also when a redelivered `cause` finds it appended already, so its follow-ups are owed again)."""

        async def decided(state: ChainState) -> Decision:
            trigger = await trigger_for(state)
            return decide(state, trigger) if trigger is not None else Decision()

        # Ids derive from the cause alone ("event-0", "command-0"): the same cause, the same envelopes.
        written = await self._writer.write(chain_stream(chain_id), decided, Stamp.caused_by(cause, None, self._clock()))
        if written.new:
            for event in written.decision.events:
                _log_milestone(event)
            # Only a new decision counts: a redelivered cause re-decides what was already counted.
            metrics.record(written.decision.events)
        return written.decision

    async def load(self, stream: str) -> ChainState:
        """The chain's state as the log has it now: the cached fold plus whatever was appended since."""
        return await self._writer.load(stream)


def _log_milestone(event: Message) -> None:
    """One line at each turn of a chain an operator follows (the log context names the chain)."""
    match event:
        case ChainPlanned():
            note = f" ({event.planner_note})" if event.planner_note else ""
            log.info("planned %d step(s) by %s%s", len(event.steps), event.planner, note)
        case ChainRefused():
            log.info("refused by rule %s: %s", event.rule, event.reason)
        case ChainCompleted():
            log.info("completed: %d step(s)", len(event.step_images))
        case ChainFailed():
            log.warning("failed at step %d: %s", event.step, event.reason)
