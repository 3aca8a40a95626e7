"""The face check's Prometheus metrics: checks by outcome, and their time (`likeness_step_attempt_seconds`,
phase "face_check", shared with the renderer). Scores themselves are counted by the planner, once per attempt."""

from __future__ import annotations

from prometheus_client import Counter

from services.runtime.metrics import observe_step_phase

__all__ = ["FACE_CHECKS", "record_check"]

FACE_CHECKS = Counter("likeness_face_checks_total", "Images this process scored, by outcome (scored, no_face, "
                      "failed)", ["outcome"])


def record_check(outcome: str, encoder: str | None = None, seconds: float | None = None) -> None:
    """Count one check; a scored one (faces found or not) records its time under its encoder."""
    FACE_CHECKS.labels(outcome).inc()
    if encoder is not None:
        observe_step_phase("face_check", encoder, seconds)
