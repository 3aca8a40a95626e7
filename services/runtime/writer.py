"""The one writer of every stream: load its state, decide, append with the expected version; on a conflict
re-read and re-decide.

Each stream has a single writing service (the planner `chain-*`, chat `character-*` and `conversation-*`),
but a service may run as several replicas: the expected version is what keeps them from overwriting each
other. Event ids are made by a `Stamp` from the message that caused them, so handling the same message
twice appends nothing new: either the decision sees it is already done, or the store sees the ids are there.

    WriterError
    └── StillConflicting   the stream kept moving under us for every round of load/decide/append
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar
from uuid import UUID

from contracts import REGISTRY, Command, Envelope, Message, TraceContext
from contracts.decision import Decision
from services.runtime import tracing
from services.runtime.eventstore import EventStore, WrongExpectedVersion
from services.runtime.ids import derived_id

__all__ = ["StillConflicting", "Stamp", "StreamWriter", "WriterError", "Written"]

log = logging.getLogger(__name__)

# Conflicts only happen when replicas race on one stream; a handful of rounds always settles it.
_MAX_ROUNDS = 10


class _Versioned(Protocol):
    @property
    def version(self) -> int: ...


S = TypeVar("S", bound=_Versioned)
Evolve = Callable[[S, Message, int | None], S]
# A decision may need I/O first (the planner plans with an LLM): `decide` may be async.
Decide = Callable[[S], Decision | Awaitable[Decision]]
CommandRoute = Callable[[Command], tuple[str, str]]


class WriterError(Exception):
    """Root of the writer's errors."""


class StillConflicting(WriterError):
    """Other writers kept appending to the stream; the message is retried later."""


@dataclass(frozen=True)
class Written(Generic[S]):
    """The stream's state after a write, and the decision the log holds for it: `new` is False when the same
    decision had already been appended (a redelivered message), so its side effects may be owed again."""

    state: S
    decision: Decision
    new: bool


@dataclass(frozen=True)
class Stamp:
    """How the envelopes of one decision are made: ids, time, correlation and causation."""

    # (the stream version decided on, "event-0" / "command-0") -> the envelope's event id
    ids: Callable[[int, str], UUID]
    occurred_at: datetime
    correlation_id: str
    causation_id: str | None = None
    actor: str | None = None
    trace: TraceContext | None = None

    @classmethod
    def caused_by(cls, cause: Envelope, purpose: str | None, now: datetime, *,
                  correlation_id: str | None = None) -> Stamp:
        """Envelopes caused by `cause`; ids derive from its event id and `purpose` ("event-0" alone when
        None), never from the version. Their trace is the current span's (the handling of `cause`, so the
        trace reads as a chain of services), else the cause's own."""
        def ids(_version: int, what: str) -> UUID:
            return derived_id(cause.event_id, f"{purpose}-{what}" if purpose else what)

        trace = tracing.trace_of_current_span() or cause.trace
        return cls(ids, now, correlation_id or cause.correlation_id, str(cause.event_id), cause.actor, trace)

    def wrap(
        self, message: Message, stream: str, version: int, what: str, correlation_id: str | None = None
    ) -> Envelope:
        return Envelope.wrap(message, event_id=self.ids(version, what), stream=stream, occurred_at=self.occurred_at,
                             correlation_id=correlation_id or self.correlation_id, causation_id=self.causation_id,
                             actor=self.actor, trace=self.trace)


class StreamWriter(Generic[S]):
    """Folds streams of one kind with `evolve`, keeps a bounded cache of states, appends decisions."""

    def __init__(self, store: EventStore, empty: S, evolve: Evolve[S], *, cache_size: int = 10_000) -> None:
        self._store = store
        self._empty = empty
        self._evolve = evolve
        self._cache: OrderedDict[str, S] = OrderedDict()
        self._cache_size = cache_size

    async def load(self, stream: str) -> S:
        """The stream's state as the log has it now: the cached fold plus whatever was appended since."""
        state = self._cache.get(stream) or self._empty
        for seq, message in await self._store.replay(stream, REGISTRY, after_version=state.version):
            state = self._evolve(state, message, seq)
        self._remember(stream, state)
        return state

    async def write(
        self, stream: str, decide: Decide[S], stamp: Stamp, *, route: CommandRoute | None = None
    ) -> Written[S]:
        """Decide on the stream's state and append; returns the state after and what was decided.

        The first round decides on the cached state without reading: if another replica moved the
        stream on, the expected version fails and the next round reads. A cached state that decides
        nothing is re-read once too, since it may simply be behind.
        """
        state = self._cache.get(stream)
        for _ in range(_MAX_ROUNDS):
            fresh = state is None
            if state is None:
                state = await self.load(stream)
            decided = decide(state)
            decision = await decided if inspect.isawaitable(decided) else decided
            if not decision.events:
                if fresh:
                    return Written(state, decision, new=False)
                state = None
                continue
            events = [stamp.wrap(e, stream, state.version, f"event-{i}") for i, e in enumerate(decision.events)]
            commands = [self._command(stamp, c, stream, state.version, i, route)
                        for i, c in enumerate(decision.commands)]
            try:
                result = await self._store.append(stream, state.version, events, commands=commands)
            except WrongExpectedVersion as exc:
                log.debug("%s; re-reading and deciding again", exc)
                state = None
                continue
            if result.idempotent:
                # The very same batch was already there: what was decided before stands, nothing new.
                self._cache.pop(stream, None)
                return Written(await self.load(stream), decision, new=False)
            for event in decision.events:
                state = self._evolve(state, event, None)
            self._remember(stream, state)
            return Written(state, decision, new=True)
        raise StillConflicting(f"{stream}: still conflicting after {_MAX_ROUNDS} rounds")

    @staticmethod
    def _command(stamp: Stamp, command: Command, stream: str, version: int, index: int,
                 route: CommandRoute | None) -> Envelope:
        target, correlation = route(command) if route else (stream, stamp.correlation_id)
        return stamp.wrap(command, target, version, f"command-{index}", correlation)

    def _remember(self, stream: str, state: S) -> None:
        self._cache[stream] = state
        self._cache.move_to_end(stream)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
