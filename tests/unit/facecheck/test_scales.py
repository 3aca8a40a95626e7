"""Both backends' similarity scales: 0..100, monotone, and 40 where each backend draws the same-person line."""

from __future__ import annotations

import numpy as np
import pytest

from services.facecheck.dlib_encoder import SAME_PERSON_DISTANCE, distance_to_score
from services.facecheck.insightface_encoder import InsightFaceEncoder


@pytest.mark.parametrize(("distance", "score"), [(0.0, 100.0), (0.25, 70.0), (0.5, 40.0), (0.65, 20.0),
                                                 (0.8, 0.0), (1.5, 0.0), (-0.1, 100.0)])
def test_dlib_distance_maps_through_the_knots(distance: float, score: float) -> None:
    assert distance_to_score(distance) == pytest.approx(score)


def test_dlib_same_person_cutoff_lands_on_the_default_threshold() -> None:
    assert distance_to_score(SAME_PERSON_DISTANCE) == pytest.approx(40.0)
    assert distance_to_score(SAME_PERSON_DISTANCE - 1e-6) > 40 > distance_to_score(SAME_PERSON_DISTANCE + 1e-6)


def test_dlib_mapping_is_monotone_and_continuous() -> None:
    grid = np.linspace(0, 1.2, 1201)
    scores = np.array([distance_to_score(float(d)) for d in grid])
    assert np.all(np.diff(scores) <= 0)
    assert np.max(np.abs(np.diff(scores))) < 0.2  # no jump at a knot
    assert scores.min() == 0 and scores.max() == 100


def test_insightface_score_is_cosine_times_100_clamped() -> None:
    encoder = InsightFaceEncoder(app=None, name="insightface/test")
    a, b = np.array([1.0, 0.0]), np.array([1.0, 1.0])
    assert encoder.similarity(a, a) == pytest.approx(100.0)
    assert encoder.similarity(a, b) == pytest.approx(70.7107, abs=1e-3)
    assert encoder.similarity(a, -a) == 0.0
    assert encoder.similarity(a, np.zeros(2)) == 0.0
