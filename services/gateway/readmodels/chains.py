"""A chain as the gateway lists it, and the images it made, folded from the chain's events. Pure.

`evolve_chain` is idempotent by stream version: an event at or below the summary's version changes
nothing, so a projector that re-reads a batch after a crash writes the same rows again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts import (
    ChainCancelled,
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainRefused,
    ChainRequested,
    ImageRef,
    Message,
    StepAccepted,
    StepFailed,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
)

__all__ = ["ChainSummary", "ImageRow", "StepSummary", "evolve_chain", "images_of"]



@dataclass(frozen=True)
class StepSummary:
    """One planned step: its kind, the attempts made, and the attempt kept."""

    index: int
    kind: str
    seed: int | None = None
    attempts: int = 0
    score: float | None = None
    sha256: str | None = None
    accepted_attempt: int | None = None
    state: str = "waiting"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "seed": self.seed, "attempts": self.attempts,
                "score": self.score, "sha256": self.sha256, "accepted_attempt": self.accepted_attempt,
                "state": self.state}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StepSummary:
        return cls(**{k: raw.get(k) for k in ("index", "kind", "seed", "score", "sha256", "accepted_attempt")},
                   attempts=raw.get("attempts", 0), state=raw.get("state", "waiting"))


@dataclass(frozen=True)
class ChainSummary:
    """A row of `chains_view`."""

    chain_id: UUID
    user_id: str = ""
    character_id: str = ""
    status: str = "running"
    request_text: str = ""
    parent_chain_id: UUID | None = None
    branch_from_step: int | None = None
    batch_id: UUID | None = None
    threshold: float | None = None
    final_sha256: str | None = None
    steps: tuple[StepSummary, ...] = ()
    outcome: str | None = None
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def requested(self) -> bool:
        return bool(self.user_id)

    @property
    def score(self) -> float | None:
        """The face score of the picture: that of the last step kept."""
        kept = [s.score for s in self.steps if s.sha256 is not None and s.score is not None]
        return kept[-1] if kept else None


@dataclass(frozen=True)
class ImageRow:
    """A row of `images_view`: an image a user's chain made (step -1 for the final picture)."""

    chain_id: UUID
    role: str
    step: int
    attempt: int
    image: ImageRef
    user_id: str
    kind: str | None
    score: float | None
    created_at: datetime


def evolve_chain(summary: ChainSummary, event: Message, version: int, at: datetime) -> ChainSummary:
    """The summary after the event at stream `version` (recorded at `at`)."""
    if version <= summary.version:
        return summary
    summary = replace(summary, version=version, updated_at=at)
    match event:
        case ChainRequested():
            return replace(summary, user_id=event.user_id, character_id=event.character_id,
                           request_text=event.request_text, parent_chain_id=event.parent_chain_id,
                           branch_from_step=event.branch_from_step, batch_id=event.batch_id,
                           status="running", created_at=summary.created_at or at)
        case ChainRefused():
            return replace(summary, status="refused", outcome=f"{event.reason} (rule {event.rule})")
        case ChainPlanned():
            steps = tuple(StepSummary(index=s.index, kind=s.kind, seed=s.seed) for s in event.steps)
            return replace(summary, steps=steps, threshold=event.threshold)
        case StepRequested():
            return _step(summary, event.step, attempts=event.attempt, state="rendering")
        case StepRendered():
            return _step(summary, event.step, state="scoring")
        case StepScored():
            return _step(summary, event.step, score=event.score)
        case StepRetried():
            return _step(summary, event.step, state="retrying")
        case StepFailed():
            return _step(summary, event.step, state="failed")
        case StepAccepted():
            return _step(summary, event.step, score=event.score, sha256=event.image.sha256,
                         accepted_attempt=event.attempt, state="accepted")
        case ChainCompleted():
            return replace(summary, status="completed", final_sha256=event.final_image.sha256)
        case ChainFailed():
            failed = _step(summary, event.step, state="failed")
            return replace(failed, status="failed", outcome=event.reason)
        case ChainCancelled():
            return replace(summary, status="cancelled", outcome=event.reason or "cancelled")
    return summary


def images_of(summary: ChainSummary, event: Message, at: datetime) -> list[ImageRow]:
    """The images an event adds to the owner's collection (call with the summary after the event)."""
    if not summary.requested:
        return []

    def row(role: str, step: int, attempt: int, image: ImageRef, score: float | None) -> ImageRow:
        kind = summary.steps[step].kind if 0 <= step < len(summary.steps) else None
        return ImageRow(summary.chain_id, role, step, attempt, image, summary.user_id, kind, score, at)

    match event:
        case StepRendered():
            return [row("attempt", event.step, event.attempt, event.image, None)]
        case StepAccepted():
            return [row("step", event.step, event.attempt, event.image, event.score)]
        case ChainCompleted():
            return [row("final", -1, 0, event.final_image, summary.score)]
    return []


def _step(summary: ChainSummary, index: int, **changes: Any) -> ChainSummary:
    if not 0 <= index < len(summary.steps):
        return summary
    steps = list(summary.steps)
    current = steps[index]
    if "attempts" in changes:
        changes["attempts"] = max(current.attempts, changes["attempts"])
    steps[index] = replace(current, **changes)
    return replace(summary, steps=tuple(steps))
