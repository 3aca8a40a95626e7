"""The audit of one chain, built from its events alone: every attempt of every step with its
prompt, LoRAs, seed, workflow hash, backend, timings, score and the decision taken. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from contracts import (
    ChainCancelled,
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainRefused,
    ChainRequested,
    ImageRef,
    LoraUse,
    Message,
    StepAccepted,
    StepFailed,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
)

__all__ = ["AttemptAudit", "ChainAudit", "StepAudit", "build_audit"]


@dataclass
class AttemptAudit:
    attempt: int
    seed: int
    input_image: ImageRef
    requested_at: datetime
    image: ImageRef | None = None
    workflow_hash: str | None = None
    backend: str | None = None
    engine: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    faces_found: int | None = None
    decision: str = "pending"
    reason: str | None = None


@dataclass
class StepAudit:
    index: int
    kind: str
    prompt: str
    negative_prompt: str
    loras: tuple[LoraUse, ...]
    model: str
    template: str
    attempts: list[AttemptAudit] = field(default_factory=list)


@dataclass
class ChainAudit:
    chain_id: str
    status: str = "new"
    request: ChainRequested | None = None
    planner: str | None = None
    planner_note: str | None = None
    threshold: float | None = None
    steps: list[StepAudit] = field(default_factory=list)
    final_image: ImageRef | None = None
    outcome: str | None = None


def build_audit(chain_id: str, events: list[tuple[Message, datetime]]) -> ChainAudit:
    """Fold (event, occurred_at) pairs of one chain stream into its audit."""
    audit = ChainAudit(chain_id)
    for event, at in events:
        _apply(audit, event, at)
    return audit


def _attempt(audit: ChainAudit, step: int, attempt: int) -> AttemptAudit | None:
    if step >= len(audit.steps):
        return None
    return next((a for a in audit.steps[step].attempts if a.attempt == attempt), None)


def _apply(audit: ChainAudit, event: Message, at: datetime) -> None:
    match event:
        case ChainRequested():
            audit.request, audit.status = event, "running"
        case ChainRefused():
            audit.status, audit.outcome = "refused", f"{event.reason} (rule {event.rule})"
        case ChainPlanned():
            audit.planner, audit.planner_note, audit.threshold = event.planner, event.planner_note, event.threshold
            audit.steps = [StepAudit(s.index, s.kind, s.prompt, s.negative_prompt, s.loras, s.model, s.template)
                           for s in event.steps]
        case StepRequested() if event.step < len(audit.steps):
            audit.steps[event.step].attempts.append(AttemptAudit(event.attempt, event.seed, event.input_image, at))
        case StepRendered():
            if found := _attempt(audit, event.step, event.attempt):
                found.image, found.workflow_hash, found.backend = event.image, event.workflow_hash, event.backend
                found.engine, found.timings = event.engine, dict(event.timings)
        case StepScored():
            if found := _attempt(audit, event.step, event.attempt):
                found.score, found.faces_found = event.score, event.faces_found
        case StepAccepted():
            if found := _attempt(audit, event.step, event.attempt):
                found.decision = "accepted" if event.decision == "threshold" else "accepted (best attempt)"
        case StepRetried():
            if found := _attempt(audit, event.step, event.next_attempt - 1):
                found.decision, found.reason = "retried", event.reason
        case StepFailed():
            if found := _attempt(audit, event.step, event.attempt):
                found.decision, found.reason = f"failed ({event.stage})", event.reason
        case ChainCompleted():
            audit.status, audit.final_image = "completed", event.final_image
        case ChainFailed():
            audit.status, audit.outcome = "failed", event.reason
            for attempt in audit.steps[event.step].attempts if event.step < len(audit.steps) else ():
                if attempt.decision == "pending":
                    attempt.decision = "rejected"
        case ChainCancelled():
            audit.status, audit.outcome = "cancelled", event.reason or "cancelled"
