"""The one fold of a chain's events, which the audit, the read models and the chain CLI all read.

Every attempt of every step with its prompt, LoRAs, seed, workflow hash, backend, timings, score
and the decision taken; what a list or a progress bar shows (a step's state, its kept attempt) is
derived from it, never folded again. Pure. The planner's saga keeps its own, smaller state: that
is the write model its decisions are made from, not a view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from contracts import (
    ChainCancelled,
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainReanchored,
    ChainRefused,
    ChainRequested,
    ImageRef,
    LoraUse,
    Message,
    ModelUsage,
    StepAccepted,
    StepFailed,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
)

__all__ = ["AttemptAudit", "ChainAudit", "StepAudit", "build_audit", "rung_text"]


@dataclass
class AttemptAudit:
    attempt: int
    seed: int
    # None for a text-to-image step, which edits nothing.
    input_image: ImageRef | None
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
    # The retry-ladder rung this attempt was rendered on and what it changed, e.g. "lower_denoise: denoise 0.72".
    rung: str | None = None
    # Similarity to the picture the attempt edited (the drift budget's measure), when measured.
    previous_score: float | None = None

    @property
    def kept(self) -> bool:
        return self.decision.startswith("accepted")


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
    seed: int | None = None  # the planned seed; a retry's own is on its attempt
    chain_failed_here: bool = False
    # The rung a StepRetried announced, for the attempt its StepRequested starts.
    next_rung: str | None = None
    # The kept attempt's drift from the picture it edited, and the chain's cumulative drift after it.
    drift: float | None = None
    cumulative_drift: float | None = None
    # Why this step edits the reference image instead of the last picture (the chain drifted past its budget).
    reanchored: str | None = None

    @property
    def kept(self) -> AttemptAudit | None:
        return next((a for a in self.attempts if a.kept), None)

    @property
    def attempts_made(self) -> int:
        return max((a.attempt for a in self.attempts), default=0)

    @property
    def score(self) -> float | None:
        """The kept attempt's score, else the latest one scored."""
        if (kept := self.kept) is not None:
            return kept.score
        return next((a.score for a in reversed(self.attempts) if a.score is not None), None)

    @property
    def state(self) -> str:
        """waiting, rendering, scoring, retrying, accepted or failed: where the step is now."""
        if self.kept is not None:
            return "accepted"
        if self.chain_failed_here:
            return "failed"
        if not self.attempts:
            return "waiting"
        last = self.attempts[-1]
        if last.decision.startswith("failed"):
            return "failed"
        if last.decision == "retried":
            return "retrying"
        return "rendering" if last.image is None else "scoring"


@dataclass
class ChainAudit:
    chain_id: str
    status: str = "new"
    request: ChainRequested | None = None
    planner: str | None = None
    planner_note: str | None = None
    # What planning's model calls cost (None when the rules planned without one).
    llm_usage: ModelUsage | None = None
    threshold: float | None = None
    # "default", "character" (set by hand) or "learned" (from the character's kept scores); None before.
    threshold_source: str | None = None
    inherited_drift: float | None = None
    drift_budget: float | None = None
    steps: list[StepAudit] = field(default_factory=list)
    final_image: ImageRef | None = None
    outcome: str | None = None
    version: int = 0
    requested_at: datetime | None = None
    updated_at: datetime | None = None

    def apply(self, event: Message, at: datetime, version: int | None = None) -> None:
        """Fold one event recorded at `at`; one at or below a known stream `version` changes nothing."""
        if version is not None:
            if version <= self.version:
                return
            self.version = version
        else:
            self.version += 1
        self.updated_at = at
        _apply(self, event, at)

    @property
    def score(self) -> float | None:
        """The face score of the picture: that of the last step kept."""
        kept = [s.kept.score for s in self.steps if s.kept is not None and s.kept.score is not None]
        return kept[-1] if kept else None


def build_audit(chain_id: str, events: list[tuple[Message, datetime]]) -> ChainAudit:
    """Fold (event, occurred_at) pairs of one chain stream into its audit."""
    audit = ChainAudit(chain_id)
    for event, at in events:
        audit.apply(event, at)
    return audit


def rung_text(event: StepRetried) -> str | None:
    """The retry-ladder rung of the attempt `event` starts and what it changed; None for a plain re-roll."""
    changes = []
    if event.denoise is not None:
        changes.append(f"denoise {event.denoise:g}")
    if event.loras is not None:
        changes.append("loras " + (", ".join(f"{lora.name}@{lora.strength:g}" for lora in event.loras) or "none"))
    if event.rung == "face_restore":
        changes.append(f"template {event.template} on attempt {event.restores_attempt}")
    if event.rung is None and not changes:
        return None
    name = event.rung or "same again"
    return f"{name}: {', '.join(changes)}" if changes else name


_ACCEPTED = {"threshold": "accepted", "best_attempt": "accepted (best attempt)",
             "unscored": "accepted (not scored: text-to-image)"}


def _attempt(audit: ChainAudit, step: int, attempt: int) -> AttemptAudit | None:
    if not 0 <= step < len(audit.steps):
        return None
    return next((a for a in audit.steps[step].attempts if a.attempt == attempt), None)


def _apply(audit: ChainAudit, event: Message, at: datetime) -> None:
    match event:
        case ChainRequested():
            audit.request, audit.status = event, "running"
            audit.requested_at = audit.requested_at or at
        case ChainRefused():
            audit.status, audit.outcome = "refused", f"{event.reason} (rule {event.rule})"
            audit.llm_usage = event.llm_usage
        case ChainPlanned():
            audit.planner, audit.planner_note, audit.threshold = event.planner, event.planner_note, event.threshold
            audit.threshold_source, audit.inherited_drift = event.threshold_source, event.inherited_drift
            audit.drift_budget = event.drift_budget
            audit.llm_usage = event.llm_usage
            audit.steps = [StepAudit(s.index, s.kind, s.prompt, s.negative_prompt, s.loras, s.model, s.template,
                                     seed=s.seed) for s in event.steps]
        case StepRequested() if 0 <= event.step < len(audit.steps):
            step = audit.steps[event.step]
            step.attempts.append(AttemptAudit(event.attempt, event.seed, event.input_image, at, rung=step.next_rung))
            step.next_rung = None
        case StepRendered():
            if found := _attempt(audit, event.step, event.attempt):
                found.image, found.workflow_hash, found.backend = event.image, event.workflow_hash, event.backend
                found.engine, found.timings = event.engine, dict(event.timings)
        case StepScored():
            if found := _attempt(audit, event.step, event.attempt):
                found.score, found.faces_found = event.score, event.faces_found
                found.previous_score = event.previous_score
        case StepAccepted():
            if found := _attempt(audit, event.step, event.attempt):
                found.decision = _ACCEPTED[event.decision]
                found.image, found.score = event.image, event.score
                step = audit.steps[event.step]
                step.drift, step.cumulative_drift = event.drift, event.cumulative_drift
        case ChainReanchored() if 0 <= event.step < len(audit.steps):
            audit.steps[event.step].reanchored = event.reason
        case StepRetried():
            if found := _attempt(audit, event.step, event.next_attempt - 1):
                found.decision, found.reason = "retried", event.reason
            if 0 <= event.step < len(audit.steps):
                audit.steps[event.step].next_rung = rung_text(event)
        case StepFailed():
            if found := _attempt(audit, event.step, event.attempt):
                found.decision, found.reason = f"failed ({event.stage})", event.reason
        case ChainCompleted():
            audit.status, audit.final_image = "completed", event.final_image
        case ChainFailed():
            audit.status, audit.outcome = "failed", event.reason
            if 0 <= event.step < len(audit.steps):
                audit.steps[event.step].chain_failed_here = True
                for attempt in audit.steps[event.step].attempts:
                    if attempt.decision == "pending":
                        attempt.decision = "rejected"
        case ChainCancelled():
            audit.status, audit.outcome = "cancelled", event.reason or "cancelled"
