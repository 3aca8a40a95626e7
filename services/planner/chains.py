"""The planner's application layer: load a chain, decide, append with the expected version.

A conflict (another replica appended first) re-reads and re-decides. Event and command ids are
derived from the message that caused them, so handling the same message twice appends nothing
new: either the saga sees the result is stale, or the store sees the ids are already there.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

from contracts import REGISTRY, ChainCompleted, ChainFailed, ChainPlanned, ChainRefused, Envelope, Message
from contracts.streams import chain_stream
from services.planner.saga.decide import Decision, Trigger, decide
from services.planner.saga.state import ChainState, evolve
from services.runtime.eventstore import EventStore, WrongExpectedVersion
from services.runtime.ids import derived_id

__all__ = ["ChainService"]

log = logging.getLogger(__name__)

# Conflicts only happen when replicas race on one chain; a handful of rounds always settles it.
_MAX_ROUNDS = 10

TriggerFor = Callable[[ChainState], Awaitable[Trigger | None]]


class ChainService:
    """Runs the saga against the event store, with a bounded cache of folded chain states."""

    def __init__(self, store: EventStore, clock: Callable[[], datetime], *, cache_size: int = 10_000) -> None:
        self._store = store
        self._clock = clock
        self._cache: OrderedDict[str, ChainState] = OrderedDict()
        self._cache_size = cache_size

    async def handle(self, chain_id: UUID, cause: Envelope, trigger_for: TriggerFor) -> Decision:
        """Decide on what `cause` brought and append the outcome; returns what was decided.

        The first round decides on the cached state without reading: if another replica moved
        the chain on, the append's expected version fails and the next round reads. A cached
        state that decides nothing is re-read once too, since it may simply be behind.
        """
        stream = chain_stream(chain_id)
        state = self._cache.get(stream)
        for _ in range(_MAX_ROUNDS):
            fresh = state is None
            if state is None:
                state = await self.load(stream)
            trigger = await trigger_for(state)
            decision = decide(state, trigger) if trigger is not None else Decision()
            if not decision.events:
                if fresh:
                    return decision
                state = None
                continue
            events = [self._wrap(e, stream, cause, f"event-{i}") for i, e in enumerate(decision.events)]
            commands = [self._wrap(c, stream, cause, f"command-{i}") for i, c in enumerate(decision.commands)]
            try:
                result = await self._store.append(stream, state.version, events, commands=commands)
            except WrongExpectedVersion:
                state = None
                continue
            if result.idempotent:
                self._cache.pop(stream, None)
            else:
                for event in decision.events:
                    state = evolve(state, event)
                    _log_milestone(event)
                self._remember(stream, state)
            return decision
        raise RuntimeError(f"{stream}: still conflicting after {_MAX_ROUNDS} rounds")

    async def load(self, stream: str) -> ChainState:
        """The chain's state as the log has it now: the cached fold plus whatever was appended since."""
        state = self._cache.get(stream) or ChainState()
        for seq, message in await self._store.replay(stream, REGISTRY, after_version=state.version):
            state = evolve(state, message, version=seq)
        self._remember(stream, state)
        return state

    def _remember(self, stream: str, state: ChainState) -> None:
        self._cache[stream] = state
        self._cache.move_to_end(stream)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _wrap(self, message: Message, stream: str, cause: Envelope, purpose: str) -> Envelope:
        return Envelope.caused_by(message, cause, event_id=derived_id(cause.event_id, purpose), stream=stream,
                                  occurred_at=self._clock())


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
