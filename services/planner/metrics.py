"""The planner's Prometheus metrics: chains by outcome, attempts per accepted step, face scores, retries.

Recorded from the events a decision appended (`record`), and only when the writer says the decision is new:
a redelivered message re-decides the same events, which must not count twice. Every label value comes from
a closed set (`chain_outcome` maps free-text reasons onto it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from contracts import (
    ChainCancelled,
    ChainCompleted,
    ChainFailed,
    ChainRefused,
    ChainRequested,
    Message,
    StepAccepted,
    StepFailed,
    StepRetried,
    StepScored,
)

__all__ = ["ATTEMPTS_PER_ACCEPTED_STEP", "CHAINS", "FACE_SCORE", "STEP_RETRIES", "chain_outcome", "record",
           "refusal_reason", "retry_reason"]

CHAINS = Counter("likeness_chains_total",
                 "Chains by outcome (started, completed, failed, refused, cancelled) and a closed-set reason",
                 ["outcome", "reason"])
ATTEMPTS_PER_ACCEPTED_STEP = Histogram(
    "likeness_attempts_per_accepted_step", "Attempts a step took until it was accepted, by why it was accepted "
    "(threshold, best_attempt, unscored)", ["decision"], buckets=(1, 2, 3, 4, 5, 6, 8, 10))
FACE_SCORE = Histogram("likeness_face_score", "Face similarity of each scored attempt, 0..100",
                       buckets=tuple(range(5, 101, 5)))
STEP_RETRIES = Counter("likeness_step_retries_total",
                       "Attempts retried, by reason (face_drift, render_<error kind>)", ["reason"])

# RenderFailed.error_kind; a reason that names another kind is "other".
_RENDER_KINDS = frozenset({"validation", "execution", "unreachable", "timeout", "interrupted", "internal"})
_RENDER_REASON = re.compile(r"render ([a-z_]+)\b")
_RULE_SEGMENT = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def record(events: Sequence[Message]) -> None:
    """Count what one new decision appended."""
    for event in events:
        outcome = chain_outcome(event, events)
        if outcome is not None:
            CHAINS.labels(*outcome).inc()
        match event:
            case StepScored():
                FACE_SCORE.observe(event.score)
            case StepAccepted():
                ATTEMPTS_PER_ACCEPTED_STEP.labels(event.decision).observe(event.attempt)
            case StepRetried():
                STEP_RETRIES.labels(retry_reason(event)).inc()


def chain_outcome(event: Message, events: Sequence[Message] = ()) -> tuple[str, str] | None:
    """(outcome, reason) when `event` starts or ends a chain; `events` is the decision it came in."""
    match event:
        case ChainRequested():
            return "started", ""
        case ChainCompleted():
            return "completed", ""
        case ChainCancelled():
            return "cancelled", ""
        case ChainRefused():
            return "refused", refusal_reason(event.rule)
        case ChainFailed():
            step_failed = next((e for e in events if isinstance(e, StepFailed)), None)
            if step_failed is None:
                return "failed", "face_drift"
            if step_failed.stage == "facecheck":
                return "failed", "face_check"
            return "failed", _render_reason(step_failed.reason)
    return None


def refusal_reason(rule: str) -> str:
    """A refusal's rule as a label: its first two dotted parts ("content_policy.words"), else "other"."""
    parts = rule.split(".")[:2]
    if all(_RULE_SEGMENT.match(part) for part in parts):
        return ".".join(parts)
    return "other"


def retry_reason(retried: StepRetried) -> str:
    """Why an attempt was retried: its face drifted (it was scored), or its render failed (of a kind)."""
    if retried.previous_score is not None:
        return "face_drift"
    return _render_reason(retried.reason)


def _render_reason(reason: str) -> str:
    match = _RENDER_REASON.match(reason)
    kind = match.group(1) if match else ""
    return f"render_{kind if kind in _RENDER_KINDS else 'other'}"
