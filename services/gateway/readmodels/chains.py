"""A chain as the gateway lists it, and the images it made: views of the chain's one fold. Pure.

The events are folded once, by `contracts.audit` (which the audit endpoint serves too); a summary
is what that fold looks like as a `chains_view` row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts import ChainCompleted, ImageRef, Message, ModelUsage, StepAccepted, StepRendered
from contracts.audit import ChainAudit

__all__ = ["ChainSummary", "ImageRow", "StepSummary", "images_of", "summarize"]


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
    llm_usage: ModelUsage | None = None

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


def summarize(chain_id: UUID, audit: ChainAudit) -> ChainSummary:
    """The row of a chain folded into `audit` (the one fold of a chain, in contracts)."""
    request = audit.request
    steps = tuple(StepSummary(index=s.index, kind=s.kind, seed=s.seed, attempts=s.attempts_made, score=s.score,
                              sha256=None if s.kept is None or s.kept.image is None else s.kept.image.sha256,
                              accepted_attempt=None if s.kept is None else s.kept.attempt, state=s.state)
                  for s in audit.steps)
    return ChainSummary(
        chain_id=chain_id, status="queued" if audit.status == "new" else audit.status,
        # "" also for a text-to-image chain, which names no character (the column is text, never null).
        user_id=request.user_id if request else "", character_id=(request.character_id or "") if request else "",
        request_text=request.request_text if request else "",
        parent_chain_id=request.parent_chain_id if request else None,
        branch_from_step=request.branch_from_step if request else None,
        batch_id=request.batch_id if request else None, threshold=audit.threshold,
        final_sha256=None if audit.final_image is None else audit.final_image.sha256, steps=steps,
        outcome=audit.outcome, version=audit.version, created_at=audit.requested_at, updated_at=audit.updated_at,
        llm_usage=audit.llm_usage)


def images_of(chain_id: UUID, audit: ChainAudit, event: Message, at: datetime) -> list[ImageRow]:
    """The images an event adds to the owner's collection (call with the audit folded up to the event)."""
    if audit.request is None:
        return []
    user_id = audit.request.user_id

    def row(role: str, step: int, attempt: int, image: ImageRef, score: float | None) -> ImageRow:
        kind = audit.steps[step].kind if 0 <= step < len(audit.steps) else None
        return ImageRow(chain_id, role, step, attempt, image, user_id, kind, score, at)

    match event:
        case StepRendered():
            return [row("attempt", event.step, event.attempt, event.image, None)]
        case StepAccepted():
            return [row("step", event.step, event.attempt, event.image, event.score)]
        case ChainCompleted():
            return [row("final", -1, 0, event.final_image, audit.score)]
    return []
