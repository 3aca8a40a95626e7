"""Both backends' similarity scales: 0..100, monotone, and 40 where each backend draws the same-person line."""

from __future__ import annotations

import numpy as np
import pytest

from services.facecheck.calibration_files import DLIB_CALIBRATION, packaged_calibration
from services.facecheck.insightface_encoder import InsightFaceEncoder

DLIB = packaged_calibration(DLIB_CALIBRATION)


def test_dlib_distance_maps_through_the_shipped_knots() -> None:
    for distance, score in DLIB.knots:
        assert DLIB.score(distance) == pytest.approx(score)
    assert DLIB.score(-0.1) == 100.0 and DLIB.score(1.5) == 0.0


def test_dlib_same_person_cutoff_lands_on_the_default_threshold() -> None:
    cut = DLIB.raw_at(40.0)
    assert DLIB.score(cut - 1e-6) > 40 > DLIB.score(cut + 1e-6)


def test_dlib_mapping_is_monotone_and_continuous() -> None:
    grid = np.linspace(0, 1.2, 1201)
    scores = np.array([DLIB.score(float(d)) for d in grid])
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
