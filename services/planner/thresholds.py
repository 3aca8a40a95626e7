"""A character's face threshold learned from its accepted scores, pure: the rule, and the stream's decide/evolve.

Rule: the `quantile` (lower tail) of the last `window` kept scores, minus `margin`, never below `floor`,
never above the default threshold, and only once `min_scores` were kept. The default sits where impostors
never reach but some genuine pictures of a face that scores low by nature (pose, light, age) fall short and
are rendered again for nothing; a low quantile of what the character's accepted pictures actually scored
says where its genuine pictures lie. Only lower, never higher: it is there to stop needless re-renders,
and the floor (above the highest impostor score the calibration saw) keeps it from accepting someone else.

The scores kept are those accepted at the threshold then in force, so a learned threshold lowers what is
kept next: the rule then sees a slightly lower tail. That settles instead of running away, because once
the threshold is below the bulk of the character's scores few are cut off any more; the floor bounds it.

A manual `CharacterThresholdSet` wins over a learned one (the planner reads that first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from contracts import CharacterScoreKept, CharacterThresholdLearned, Message
from contracts.decision import Decision

__all__ = ["LearnedState", "ThresholdRule", "decide", "evolve", "learn", "lower_quantile"]


@dataclass(frozen=True)
class ThresholdRule:
    quantile: float = 0.1
    margin: float = 5.0
    floor: float = 37.0
    ceiling: float = 40.0
    min_scores: int = 8
    window: int = 50

    def __post_init__(self) -> None:
        if not 0 <= self.quantile <= 1:
            raise ValueError(f"quantile {self.quantile} must be within [0, 1]")
        if self.floor > self.ceiling:
            raise ValueError(f"floor {self.floor} is above the ceiling (the default threshold) {self.ceiling}")
        if self.min_scores < 1 or self.window < self.min_scores:
            raise ValueError(f"need 1 <= min_scores ({self.min_scores}) <= window ({self.window})")


@dataclass(frozen=True)
class Learned:
    threshold: float
    quantile_score: float
    rule: str


def lower_quantile(scores: Sequence[float], q: float) -> float:
    """The q-quantile with linear interpolation between order statistics (numpy's default), for any q in [0, 1]."""
    ordered = sorted(scores)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def learn(scores: Sequence[float], rule: ThresholdRule) -> Learned | None:
    """The threshold `rule` gives for `scores` (the most recent last), or None while too few were kept."""
    recent = list(scores)[-rule.window:]
    if len(recent) < rule.min_scores:
        return None
    tail = round(lower_quantile(recent, rule.quantile), 2)
    threshold = round(min(rule.ceiling, max(rule.floor, tail - rule.margin)), 2)
    words = (f"q{rule.quantile:g} of {len(recent)} kept scores - {rule.margin:g}, "
             f"within [{rule.floor:g}, {rule.ceiling:g}]")
    return Learned(threshold, tail, words)


@dataclass(frozen=True)
class LearnedState:
    """One `threshold-*` stream folded: the kept scores (oldest first), which steps they came from, the result."""

    version: int = 0
    scores: tuple[float, ...] = ()
    seen: frozenset[tuple[str, int]] = frozenset()
    threshold: float | None = None


def evolve(state: LearnedState, event: Message, version: int | None = None) -> LearnedState:
    state = replace(state, version=version if version is not None else state.version + 1)
    match event:
        case CharacterScoreKept():
            return replace(state, scores=(*state.scores, event.score),
                           seen=state.seen | {(str(event.chain_id), event.step)})
        case CharacterThresholdLearned():
            return replace(state, threshold=event.threshold)
    return state


def decide(state: LearnedState, kept: CharacterScoreKept, rule: ThresholdRule) -> Decision:
    """Record a kept score (once per chain step) and, when the rule's result changes, the threshold learned."""
    if (str(kept.chain_id), kept.step) in state.seen:
        return Decision()
    scores = (*state.scores, kept.score)
    learned = learn(scores, rule)
    if learned is None or learned.threshold == state.threshold:
        return Decision([kept])
    used = tuple(scores[-rule.window:])
    return Decision([kept, CharacterThresholdLearned(
        character_id=kept.character_id, reference_sha256=kept.reference_sha256, threshold=learned.threshold,
        scores=used, rule=learned.rule, quantile_score=learned.quantile_score)])
