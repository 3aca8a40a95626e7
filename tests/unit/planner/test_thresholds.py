"""The learned threshold, pure: the rule's bounds, when it speaks, what it records, and that it settles."""

from __future__ import annotations

import random
import uuid

import pytest

from contracts import CharacterScoreKept, CharacterThresholdLearned
from services.planner.settings import PlannerSettings
from services.planner.thresholds import LearnedState, ThresholdRule, decide, evolve, learn, lower_quantile

RULE = ThresholdRule(quantile=0.1, margin=5.0, floor=25.0, ceiling=40.0, min_scores=4, window=6)
SHA = "c" * 64


def kept(score: float, step: int = 0, chain: uuid.UUID | None = None) -> CharacterScoreKept:
    return CharacterScoreKept(character_id="luna", reference_sha256=SHA, chain_id=chain or uuid.uuid4(), step=step,
                              score=score)


def test_the_quantile_interpolates_like_numpy() -> None:
    assert lower_quantile([10.0, 20.0, 30.0, 40.0, 50.0], 0.1) == pytest.approx(14.0)
    assert lower_quantile([50.0, 10.0], 0.0) == 10.0 and lower_quantile([50.0, 10.0], 1.0) == 50.0


@pytest.mark.parametrize(("scores", "expected"), [
    ([41.0, 44.0, 47.0], None),                          # fewer than min_scores: nothing learned yet
    ([41.0, 44.0, 47.0, 52.0], 36.9),                    # q0.1 = 41.9, minus 5
    ([80.0, 85.0, 90.0, 95.0], 40.0),                    # a face that scores high keeps the default (ceiling)
    ([26.0, 27.0, 28.0, 60.0], 25.0),                    # never below the floor
    ([10.0, 10.0, 10.0, 10.0, 40.0, 41.0, 42.0, 43.0, 44.0, 45.0], 35.5),  # only the last `window` count
])
def test_the_rule_is_a_low_quantile_minus_a_margin_within_floor_and_default(scores, expected) -> None:
    learned = learn(scores, RULE)
    assert (None if learned is None else learned.threshold) == (None if expected is None else pytest.approx(expected))


def test_a_kept_score_is_recorded_and_a_changed_result_is_learned_with_the_scores_it_used() -> None:
    state = LearnedState()
    log: list = []
    for score in (41.0, 44.0, 47.0, 52.0, 52.0):
        for event in decide(state, kept(score), RULE).events:
            state = evolve(state, event)
            log.append(event)
    types = [e.type.removeprefix("character.") for e in log]
    # Learned at the 4th score; the 5th moves q0.1 from 41.9 to 42.2, so a new result is learned.
    assert types == ["score_kept"] * 4 + ["threshold_learned", "score_kept", "threshold_learned"]
    learned = [e for e in log if isinstance(e, CharacterThresholdLearned)]
    assert learned[0].scores == (41.0, 44.0, 47.0, 52.0) and learned[0].threshold == 36.9
    assert learned[0].quantile_score == 41.9 and "q0.1 of 4 kept scores - 5, within [25, 40]" == learned[0].rule
    assert learned[1].threshold == 37.2 and state.threshold == 37.2


def test_the_same_step_is_kept_once() -> None:
    chain = uuid.uuid4()
    state = evolve(LearnedState(), kept(50.0, 2, chain))
    assert decide(state, kept(50.0, 2, chain), RULE).events == []
    assert decide(state, kept(50.0, 3, chain), RULE).events != []


def test_an_unchanged_result_records_only_the_score() -> None:
    state = LearnedState()
    for score in (90.0, 91.0, 92.0, 93.0, 94.0):
        for event in decide(state, kept(score), RULE).events:
            state = evolve(state, event)
    # At the ceiling from the 4th score on: learned once, the 5th score is only kept.
    assert decide(state, kept(95.0), RULE).events[-1].type == "character.score_kept"


def test_learning_from_what_it_let_through_settles_instead_of_running_to_the_floor() -> None:
    """Scores kept are those at or above the threshold in force; feed the learned threshold back and it
    settles near the low tail of the character's own scores, well above the floor."""
    rng = random.Random(7)
    # A floor low enough not to be what stops it (the default, 37, would hold it at 37).
    rule = ThresholdRule(min_scores=8, window=50, floor=25.0)
    genuine = [rng.gauss(44.0, 8.0) for _ in range(2000)]
    threshold, kept_scores, path = 40.0, [], []
    for score in genuine:
        if score >= threshold:
            kept_scores.append(round(score, 2))
            learned = learn(kept_scores, rule)
            threshold = learned.threshold if learned else threshold
            path.append(threshold)
    settled = path[-500:]
    assert max(settled) - min(settled) < 6.0
    assert 27.0 < sum(settled) / len(settled) < 36.0   # around q0.1 of N(44, 8) (33.7) minus 5; the floor is 25


def test_settings_give_the_rule_and_a_lowered_default_caps_the_floor() -> None:
    rule = PlannerSettings(threshold=39.0, threshold_learn_min_scores=3).threshold_rule()
    assert (rule.ceiling, rule.floor, rule.min_scores) == (39.0, 37.0, 3)
    assert PlannerSettings(threshold=20.0).threshold_rule().floor == 20.0
    with pytest.raises(ValueError, match="WINDOW"):
        PlannerSettings(threshold_learn_min_scores=10, threshold_learn_window=5)
