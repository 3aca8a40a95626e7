"""Calibration math, pure: a recognizer's raw similarity -> the service's 0..100 score, and how well it separates.

A recognizer compares two embeddings in its own units: dlib by euclidean distance (smaller is more
alike), ArcFace-style models by cosine (larger is more alike). `Calibration` maps that raw value onto
0..100 through piecewise-linear knots, so one threshold (40 by default) means the same for every
recognizer. `fit` chooses the knots from labelled pairs; `auc`, `eer` and `rates` say how well
the raw values separate the same person from different people.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLD",
    "Calibration",
    "Fit",
    "Metric",
    "Rates",
    "auc",
    "eer",
    "fit",
    "raw_similarity",
    "rates",
]

Metric = Literal["euclidean", "cosine"]
DEFAULT_THRESHOLD = 40.0
# Raw value of two identical embeddings: the 100 knot.
_PERFECT: dict[str, float] = {"euclidean": 0.0, "cosine": 1.0}


def raw_similarity(metric: Metric, a: np.ndarray, b: np.ndarray) -> float:
    """The recognizer's own comparison of two embeddings (distance for euclidean, cosine for cosine)."""
    if metric == "euclidean":
        return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(np.ravel(a), np.ravel(b)) / norms) if norms > 0 else 0.0


def _alike(metric: Metric, raw: float) -> float:
    # One direction for the math below: larger is more alike for both metrics.
    return -raw if metric == "euclidean" else raw


@dataclass(frozen=True)
class Calibration:
    """Piecewise-linear raw -> score knots, raw strictly increasing, clamped at both ends."""

    recognizer: str
    metric: Metric
    knots: tuple[tuple[float, float], ...]
    # Where it came from (data, counts, figures, date): carried into the file, never used for scoring.
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.metric not in _PERFECT:
            raise ValueError(f"calibration metric must be euclidean or cosine, not {self.metric!r}")
        if len(self.knots) < 2:
            raise ValueError("a calibration needs at least two knots")
        raws = [r for r, _ in self.knots]
        scores = [s for _, s in self.knots]
        if any(not (math.isfinite(r) and math.isfinite(s)) for r, s in self.knots):
            raise ValueError("calibration knots must be finite numbers")
        if any(b <= a for a, b in zip(raws, raws[1:])):
            raise ValueError(f"calibration knots' raw values must strictly increase: {raws}")
        if any(not 0 <= s <= 100 for s in scores):
            raise ValueError(f"calibration scores must lie in 0..100: {scores}")
        steps = np.diff(scores)
        # More alike never scores lower: scores fall with distance, rise with cosine.
        wrong = steps > 0 if self.metric == "euclidean" else steps < 0
        if np.any(wrong):
            direction = "decrease" if self.metric == "euclidean" else "increase"
            raise ValueError(f"with metric {self.metric} the knots' scores must {direction}: {scores}")

    def score(self, raw: float) -> float:
        """The 0..100 score of one raw value."""
        raws = [r for r, _ in self.knots]
        if raw <= raws[0]:
            return self.knots[0][1]
        if raw >= raws[-1]:
            return self.knots[-1][1]
        i = bisect.bisect_right(raws, raw)
        (r0, s0), (r1, s1) = self.knots[i - 1], self.knots[i]
        return s0 + (s1 - s0) * (raw - r0) / (r1 - r0)

    def raw_at(self, score: float) -> float:
        """The raw value that maps onto `score` (the first along the knots), e.g. the threshold's."""
        for (r0, s0), (r1, s1) in zip(self.knots, self.knots[1:]):
            if min(s0, s1) <= score <= max(s0, s1) and s0 != s1:
                return r0 + (r1 - r0) * (score - s0) / (s1 - s0)
        raise ValueError(f"score {score} is outside this calibration's range")

    def to_json(self) -> dict:
        return {"format": 1, "recognizer": self.recognizer, "metric": self.metric,
                "knots": [[r, s] for r, s in self.knots], **self.meta}

    @classmethod
    def from_json(cls, data: object, *, source: str = "calibration") -> Calibration:
        """Parse a calibration file's JSON object; a clear `ValueError` naming `source` for anything else."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object")
        if data.get("format") != 1:
            raise ValueError(f"{source}: unknown format {data.get('format')!r} (this code reads format 1)")
        try:
            knots = tuple((float(r), float(s)) for r, s in data["knots"])
            meta = {k: v for k, v in data.items() if k not in ("format", "recognizer", "metric", "knots")}
            return cls(recognizer=str(data["recognizer"]), metric=data["metric"], knots=knots, meta=meta)
        except KeyError as exc:
            raise ValueError(f"{source}: missing field {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None


def auc(same: Sequence[float], different: Sequence[float], metric: Metric) -> float:
    """Probability that a random same-person pair is more alike than a random different pair (ties count half)."""
    s = np.array([_alike(metric, v) for v in same])
    d = np.array([_alike(metric, v) for v in different])
    if not len(s) or not len(d):
        raise ValueError("AUC needs same-person and different-person pairs")
    greater = (s[:, None] > d[None, :]).sum()
    ties = (s[:, None] == d[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(s) * len(d)))


def eer(same: Sequence[float], different: Sequence[float], metric: Metric) -> tuple[float, float]:
    """Equal error rate and the raw cut where it occurs (pass: at least as alike as the cut).

    Over every candidate cut (each observed value), the one where the same-person rejection rate and
    the different-person acceptance rate are closest; the EER is their mean there.
    """
    s = np.array([_alike(metric, v) for v in same])
    d = np.array([_alike(metric, v) for v in different])
    if not len(s) or not len(d):
        raise ValueError("EER needs same-person and different-person pairs")
    best: tuple[float, float, float] | None = None
    for cut in np.unique(np.concatenate([s, d, [np.inf]])):
        rejected = float((s < cut).mean())
        accepted = float((d >= cut).mean())
        gap = abs(rejected - accepted)
        if best is None or gap < best[0]:
            best = (gap, (rejected + accepted) / 2, float(cut))
    assert best is not None
    cut = best[2]
    return best[1], (-cut if metric == "euclidean" else cut)


@dataclass(frozen=True)
class Rates:
    """Errors at one score threshold (pass: score >= threshold, as the planner decides)."""

    threshold: float
    same_rejected: int
    same_total: int
    different_accepted: int
    different_total: int

    @property
    def same_rejected_rate(self) -> float:
        return self.same_rejected / self.same_total if self.same_total else 0.0

    @property
    def different_accepted_rate(self) -> float:
        return self.different_accepted / self.different_total if self.different_total else 0.0


def rates(same_scores: Sequence[float], different_scores: Sequence[float], threshold: float) -> Rates:
    """Same-person pairs rejected and different-person pairs accepted at `threshold` (scores on 0..100)."""
    return Rates(threshold=threshold,
                 same_rejected=sum(1 for s in same_scores if s < threshold), same_total=len(same_scores),
                 different_accepted=sum(1 for s in different_scores if s >= threshold),
                 different_total=len(different_scores))


@dataclass(frozen=True)
class Fit:
    """Fitted knots and whether the target held on the data; `note` says what was done when it could not."""

    knots: tuple[tuple[float, float], ...]
    cut: float  # raw value mapped onto the threshold
    feasible: bool
    note: str


def fit(same: Sequence[float], different: Sequence[float], metric: Metric, *,
        threshold: float = DEFAULT_THRESHOLD, max_same_rejected: float = 0.01, decimals: int = 4) -> Fit:
    """Knots under which, on these pairs, `threshold` accepts no different pair and rejects <= `max_same_rejected`.

    Three knots: a perfect match scores 100; the cut scores `threshold`, placed in the middle of the gap
    between the most alike different pair and the least alike same pair that must pass; the median
    different pair scores 0, so typical impostors read 0. When no such gap exists the cut sits just
    past the most alike different pair: letting a wrong face through costs more than a re-render.
    """
    s = sorted(_alike(metric, v) for v in same)
    d = sorted(_alike(metric, v) for v in different)
    if not s or not d:
        raise ValueError("fitting needs same-person and different-person pairs")
    if not 0 < threshold < 100:
        raise ValueError("the threshold must lie strictly between 0 and 100")
    perfect = _alike(metric, _PERFECT[metric])
    allowed = math.floor(max_same_rejected * len(s) + 1e-9)
    must_pass = s[allowed]  # the least alike same pair that has to score >= threshold
    worst_impostor = d[-1]
    if worst_impostor >= perfect:
        raise ValueError("a different-person pair is a perfect match: these labels or embeddings are wrong")
    step = 10.0 ** -decimals
    if worst_impostor + 2 * step < must_pass:
        cut = (worst_impostor + must_pass) / 2
        feasible, note = True, (f"threshold {threshold:g} in the middle of the gap between the most alike "
                                f"different pair and the least alike same pair that must pass")
    else:
        cut = worst_impostor + 2 * step
        rejected = sum(1 for v in s if v < cut)
        feasible = False
        note = (f"impossible on this data: no cut rejects <= {max_same_rejected:.0%} of same-person pairs "
                f"({allowed} of {len(s)}) and accepts no different pair; chose to accept no different pair, "
                f"rejecting {rejected} of {len(s)} same-person pairs ({rejected / len(s):.1%})")
    cut = min(cut, perfect - step)
    zero = min(d[len(d) // 2], cut - step)
    points = [(perfect, 100.0), (cut, threshold), (zero, 0.0)]
    raw = [(round(-a if metric == "euclidean" else a, decimals), score) for a, score in points]
    knots = tuple(sorted(raw))
    return Fit(knots=knots, cut=knots[1][0], feasible=feasible, note=note)
