"""Pure: how a re-rendered step compares with its pin (score, image distance, workflow hash), and the table.

The image distance is the mean absolute difference of the two pictures' pixels, both reduced to 64 x 64 RGB
with a box filter, in percent of full scale (0: the same picture, 100: black against white). Reduced first,
so that sampler noise and re-encoding count for little and a changed face, light or framing counts; measured
at one size, so that a step whose output size changed is still compared.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from PIL import Image, ImageChops, ImageStat, UnidentifiedImageError

__all__ = ["DISTANCE_SIZE", "StepCheck", "Tolerance", "exit_code", "image_distance", "regressions", "render_table"]

DISTANCE_SIZE = 64


@dataclass(frozen=True)
class Tolerance:
    """How far a re-rendered step may fall from its pin before the release gate closes."""

    # Points (0-100 scale) the face score may drop.
    max_score_drop: float = 5.0
    # Image distance (percent, see the module doc) the picture may move.
    max_distance: float = 8.0

    def __post_init__(self) -> None:
        if self.max_score_drop < 0 or not 0 <= self.max_distance <= 100:
            raise ValueError(f"tolerances must be a score drop >= 0 and a distance in 0..100, got "
                             f"{self.max_score_drop} and {self.max_distance}")


@dataclass(frozen=True)
class StepCheck:
    """One pinned step rendered again: what came out, or why nothing did."""

    chain_id: UUID
    step: int
    template: str
    threshold: float
    pinned_score: float | None
    pinned_hash: str
    new_score: float | None = None
    distance: float | None = None
    new_hash: str | None = None
    # What facecheck said about the new picture beside its score (e.g. that it found no face).
    face_note: str | None = None
    # The pinned picture's score under today's face check; the new score is compared with this one, so a
    # recalibrated face check is not taken for a render that moved.
    pinned_now: float | None = None
    # The render or face check failed (a regression: the step no longer makes a picture).
    failure: str | None = None
    # The step could not be checked at all: no answer in time (the renderer or facecheck is not running), or
    # the pinned picture is gone from the blob store. Not a regression, not a pass.
    unchecked: str | None = None

    @property
    def baseline(self) -> float | None:
        """The score the new one is held to: the pinned picture's under today's face check, else as recorded."""
        return self.pinned_score if self.pinned_now is None else self.pinned_now

    @property
    def scorer_moved(self) -> bool:
        return None not in (self.pinned_now, self.pinned_score) and abs(self.pinned_now - self.pinned_score) >= 0.05

    @property
    def workflow_changed(self) -> bool:
        return self.new_hash is not None and self.new_hash != self.pinned_hash


def image_distance(a: bytes, b: bytes) -> float:
    """Mean absolute pixel difference of two encoded pictures at 64 x 64 RGB, 0-100 (see the module doc)."""
    # Pillow alone (no numpy): the launcher's install has no numpy, and 64 x 64 is cheap either way.
    difference = ImageChops.difference(_small(a, "first"), _small(b, "second"))
    means = ImageStat.Stat(difference).mean
    return sum(means) / len(means) / 255.0 * 100.0


def _small(data: bytes, which: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return opened.convert("RGB").resize((DISTANCE_SIZE, DISTANCE_SIZE), Image.Resampling.BOX)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"the {which} image cannot be read as a picture: {exc}") from None


def regressions(check: StepCheck, tolerance: Tolerance) -> list[str]:
    """Why the step fails the gate; empty when it passes (a changed workflow alone is reported, not failed)."""
    if check.unchecked is not None:
        return [check.unchecked]
    if check.failure is not None:
        return [check.failure]
    reasons = []
    baseline = check.baseline
    if baseline is not None and check.new_score is not None:
        drop = baseline - check.new_score
        if drop > tolerance.max_score_drop:
            note = f": {check.face_note}" if check.face_note else ""
            reasons.append(f"score dropped {drop:.1f} points (> {tolerance.max_score_drop:g}){note}")
        if check.new_score < check.threshold <= baseline:
            reasons.append(f"score {check.new_score:.1f} is below the chain's threshold {check.threshold:g}")
    if check.distance is not None and check.distance > tolerance.max_distance:
        reasons.append(f"image distance {check.distance:.1f} (> {tolerance.max_distance:g})")
    return reasons


def exit_code(checks: Sequence[StepCheck], tolerance: Tolerance) -> int:
    """0: every step passed; 1: some step regressed; 2: some step could not be checked (see StepCheck)."""
    if any(check.unchecked is not None for check in checks):
        return 2
    return 1 if any(regressions(check, tolerance) for check in checks) else 0


def render_table(checks: Sequence[StepCheck], tolerance: Tolerance) -> str:
    """One row per step, then one line per regression naming chain and step, and the workflow changes."""
    header = ("CHAIN", "STEP", "TEMPLATE", "SCORE", "DELTA", "DISTANCE", "WORKFLOW", "RESULT")
    rows = [header]
    for check in checks:
        failed = regressions(check, tolerance)
        result = "ok" if not failed else ("NOT CHECKED" if check.unchecked else "REGRESSED")
        rows.append((str(check.chain_id)[:8], str(check.step + 1), check.template,
                     f"{_score(check.baseline)} -> {_score(check.new_score)}", _delta(check),
                     "-" if check.distance is None else f"{check.distance:.1f}",
                     "-" if check.new_hash is None else ("changed" if check.workflow_changed else "same"), result))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    for check in checks:
        for reason in regressions(check, tolerance):
            lines.append(f"chain {check.chain_id} step {check.step + 1}: {reason}")
    for check in checks:
        if check.scorer_moved:
            lines.append(f"chain {check.chain_id} step {check.step + 1}: the pinned picture scores "
                         f"{check.pinned_now:.1f} today, {check.pinned_score:.1f} when pinned (the face check "
                         f"changed); the new picture is held to {check.pinned_now:.1f}")
        if check.workflow_changed:
            lines.append(f"chain {check.chain_id} step {check.step + 1}: workflow {check.pinned_hash[:12]} -> "
                         f"{check.new_hash[:12]} (template {check.template!r} or its bindings changed)")
    return "\n".join(lines)


def _score(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"


def _delta(check: StepCheck) -> str:
    if check.baseline is None or check.new_score is None:
        return "-"
    return f"{check.new_score - check.baseline:+.1f}"
