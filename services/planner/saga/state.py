"""A chain's state, folded from its events with `evolve`; pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from uuid import UUID

from contracts import (
    ChainCancelled,
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainReanchored,
    ChainRefused,
    ChainRequested,
    ImageRef,
    Message,
    PlannedStep,
    StepAccepted,
    StepFailed,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
)

__all__ = ["AttemptRecord", "ChainState", "Status", "evolve", "fold"]


class Status(Enum):
    NEW = "new"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUSED = "refused"

    @property
    def finished(self) -> bool:
        return self not in (Status.NEW, Status.RUNNING)


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of the current step: its seed, and what came of it so far."""

    number: int
    seed: int
    # None: a text-to-image attempt, which edits nothing.
    input_image: ImageRef | None
    image: ImageRef | None = None
    score: float | None = None
    reason: str | None = None
    # Similarity to the picture the attempt edited, when the face check measured it.
    previous_score: float | None = None


@dataclass(frozen=True)
class ChainState:
    """Everything `decide` needs; `version` is the stream version it was folded to."""

    chain_id: UUID | None = None
    version: int = 0
    status: Status = Status.NEW
    request: ChainRequested | None = None
    plan: ChainPlanned | None = None
    step: int = 0
    attempts: tuple[AttemptRecord, ...] = ()
    accepted: tuple[ImageRef, ...] = ()
    failure: str | None = None
    # Cumulative drift since the last anchor (`saga.drift`), and its value after each accepted step, which
    # a follow-up chain editing that step's picture starts from.
    drift: float = 0.0
    drifts: tuple[float, ...] = ()

    @property
    def current(self) -> AttemptRecord | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def planned_step(self) -> PlannedStep | None:
        return self.plan.steps[self.step] if self.plan and self.step < len(self.plan.steps) else None


def evolve(state: ChainState, event: Message, version: int | None = None) -> ChainState:
    """The state after `event`; unknown events leave it as it was (but for the version)."""
    state = replace(state, version=version if version is not None else state.version + 1)
    match event:
        case ChainRequested():
            return replace(state, chain_id=event.chain_id, request=event, status=Status.RUNNING)
        case ChainRefused():
            return replace(state, status=Status.REFUSED, failure=event.reason)
        case ChainPlanned():
            return replace(state, plan=event, drift=event.inherited_drift or 0.0)
        case StepRequested():
            attempts = state.attempts if event.step == state.step else ()
            record = AttemptRecord(event.attempt, event.seed, event.input_image)
            return replace(state, step=event.step, attempts=(*attempts, record))
        case StepRendered():
            return _update_attempt(state, event.attempt, image=event.image)
        case StepScored():
            return _update_attempt(state, event.attempt, score=event.score, previous_score=event.previous_score)
        case StepFailed():
            return _update_attempt(state, event.attempt, reason=event.reason)
        case StepRetried():
            return state
        case StepAccepted():
            # A step accepted before drift was recorded leaves the sum as it was.
            drift = state.drift if event.cumulative_drift is None else event.cumulative_drift
            return replace(state, accepted=(*state.accepted, event.image), drift=drift,
                           drifts=(*state.drifts, drift))
        case ChainReanchored():
            return replace(state, drift=0.0)
        case ChainCompleted():
            return replace(state, status=Status.COMPLETED)
        case ChainFailed():
            return replace(state, status=Status.FAILED, failure=event.reason)
        case ChainCancelled():
            return replace(state, status=Status.CANCELLED, failure=event.reason)
    return state


def fold(events: list[Message], start: ChainState | None = None) -> ChainState:
    state = start or ChainState()
    for event in events:
        state = evolve(state, event)
    return state


def _update_attempt(state: ChainState, number: int, **changes: object) -> ChainState:
    attempts = tuple(replace(a, **changes) if a.number == number else a for a in state.attempts)
    return replace(state, attempts=attempts)
