"""Calibration math: AUC, EER, error rates, the knot fit and the calibration file format."""

from __future__ import annotations

import json
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest

from services.facecheck.calibrate import read_pairs
from services.facecheck.calibration import Calibration, auc, eer, fit, raw_similarity, rates
from services.facecheck.calibration_files import DLIB_CALIBRATION, load_calibration, packaged_calibration
from services.facecheck.errors import ModelPackError
from tests.conftest import REPO


def test_auc_counts_pairs_in_order_and_ties_half() -> None:
    assert auc([0.9, 0.8], [0.1, 0.2], "cosine") == 1.0
    assert auc([0.1, 0.2], [0.9, 0.8], "cosine") == 0.0
    assert auc([0.5], [0.5], "cosine") == 0.5
    # 3 same x 2 different = 6 comparisons: 0.7 beats both, 0.4 beats 0.3 only, 0.2 beats none.
    assert auc([0.7, 0.4, 0.2], [0.3, 0.5], "cosine") == pytest.approx(3 / 6)
    # Distances run the other way: small is alike.
    assert auc([0.3, 0.4], [0.7, 0.9], "euclidean") == 1.0


def test_eer_is_where_both_error_rates_meet() -> None:
    assert eer([0.9, 0.8, 0.7], [0.1, 0.2, 0.3], "cosine") == (0.0, 0.7)
    rate, cut = eer([0.9, 0.6, 0.4, 0.3], [0.5, 0.2, 0.1, 0.05], "cosine")
    # At cut 0.4 one of four same pairs is rejected and one of four different pairs accepted.
    assert (rate, cut) == (0.25, 0.4)
    rate, cut = eer([0.2, 0.3], [0.6, 0.8], "euclidean")
    assert rate == 0.0 and 0.3 <= cut < 0.6


def test_rates_pass_at_or_above_the_threshold_as_the_planner_decides() -> None:
    r = rates([40.0, 39.99, 80.0], [40.0, 10.0], 40.0)
    assert (r.same_rejected, r.same_total, r.different_accepted, r.different_total) == (1, 3, 1, 2)
    assert r.same_rejected_rate == pytest.approx(1 / 3) and r.different_accepted_rate == 0.5


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_a_fit_puts_the_threshold_inside_the_gap(metric: str) -> None:
    rng = np.random.default_rng(3)
    if metric == "euclidean":
        same, different = rng.uniform(0.2, 0.55, 200), rng.uniform(0.62, 1.1, 800)
    else:
        same, different = rng.uniform(0.35, 0.9, 200), rng.uniform(-0.1, 0.28, 800)
    result = fit(list(same), list(different), metric)
    assert result.feasible and "middle of the gap" in result.note
    cal = Calibration("test/model", metric, result.knots)
    same_scores = [round(cal.score(v), 2) for v in same]
    diff_scores = [round(cal.score(v), 2) for v in different]
    at = rates(same_scores, diff_scores, 40.0)
    assert at.different_accepted == 0 and at.same_rejected <= 2
    assert cal.score(raw_similarity(metric, np.ones(4), np.ones(4))) == 100.0
    assert np.median(diff_scores) == pytest.approx(0.0, abs=0.5)


def test_a_fit_may_reject_one_percent_of_same_pairs_but_no_more() -> None:
    same = [0.9] * 198 + [0.2, 0.25]  # two outliers of 200: 1 % allows two rejections
    result = fit(same, [0.3, 0.1, 0.0], "cosine")
    assert result.feasible and 0.3 < result.cut < 0.9
    strict = fit(same, [0.3, 0.1, 0.0], "cosine", max_same_rejected=0.0)
    assert not strict.feasible


def test_an_impossible_target_says_so_and_still_accepts_no_different_pair() -> None:
    same, different = [0.9, 0.8, 0.5, 0.3], [0.6, 0.2, 0.1]
    result = fit(same, different, "cosine")
    assert not result.feasible
    assert "impossible on this data" in result.note and "rejecting 2 of 4" in result.note
    cal = Calibration("test/model", "cosine", result.knots)
    assert max(round(cal.score(v), 2) for v in different) < 40
    assert rates([round(cal.score(v), 2) for v in same], [], 40).same_rejected == 2


def test_bad_fit_input_is_refused() -> None:
    with pytest.raises(ValueError, match="same-person and different-person"):
        fit([0.5], [], "cosine")
    with pytest.raises(ValueError, match="perfect match"):
        fit([0.9], [1.0], "cosine")


def test_a_calibration_interpolates_clamps_and_inverts() -> None:
    cal = Calibration("dlib/resnet_v1", "euclidean", ((0.0, 100.0), (0.6, 40.0), (0.9, 0.0)))
    assert cal.score(-1) == 100 and cal.score(0.3) == pytest.approx(70) and cal.score(2) == 0
    assert cal.raw_at(40) == pytest.approx(0.6) and cal.raw_at(20) == pytest.approx(0.75)
    again = Calibration.from_json(json.loads(json.dumps(cal.to_json())))
    assert again == cal


@pytest.mark.parametrize(("metric", "knots", "message"), [
    ("euclidean", ((0.0, 0.0), (1.0, 100.0)), "must decrease"),
    ("cosine", ((0.0, 100.0), (1.0, 0.0)), "must increase"),
    ("cosine", ((0.5, 10.0), (0.5, 20.0)), "strictly increase"),
    ("cosine", ((0.0, 0.0), (1.0, 120.0)), "0..100"),
    ("cosine", ((0.0, 0.0),), "two knots"),
    ("manhattan", ((0.0, 0.0), (1.0, 100.0)), "euclidean or cosine"),
])
def test_malformed_calibrations_are_refused(metric: str, knots: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Calibration("x", metric, knots)  # type: ignore[arg-type]


def test_calibration_files_name_their_problem(tmp_path: Path) -> None:
    with pytest.raises(ModelPackError, match="does not exist"):
        load_calibration(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelPackError, match="unreadable"):
        load_calibration(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({"format": 7}))
    with pytest.raises(ModelPackError, match="unknown format 7"):
        load_calibration(tmp_path / "old.json")
    (tmp_path / "other.json").write_text(json.dumps(
        {"format": 1, "recognizer": "a/b", "metric": "cosine", "knots": [[0, 0], [1, 100]]}))
    with pytest.raises(ModelPackError, match="is for a/b, not dlib/resnet_v1"):
        load_calibration(tmp_path / "other.json", recognizer="dlib/resnet_v1")


def test_the_shipped_dlib_calibration_loads_and_is_package_data() -> None:
    cal = packaged_calibration(DLIB_CALIBRATION, recognizer="dlib/resnet_v1")
    assert cal.metric == "euclidean" and cal.meta["target"]["met"] is True
    assert 0.55 < cal.raw_at(40) < 0.7  # between the labelled photos' same and different pairs
    # The wheel carries only files that pyproject's package-data names.
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch(f"calibrations/{DLIB_CALIBRATION}", glob) for glob in patterns["services.facecheck"])


def test_pairs_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "pairs.csv"
    good.write_text("file_x,file_y,Decision\na.jpg,b.jpg,Yes\na.jpg,c.jpg,no\n")
    assert [(p.x, p.y, p.same) for p in read_pairs(good)] == [("a.jpg", "b.jpg", True), ("a.jpg", "c.jpg", False)]
    bad = tmp_path / "bad.csv"
    bad.write_text("file_x,file_y,Decision\na.jpg,b.jpg,Maybe\n")
    with pytest.raises(ValueError, match="line 2: Decision must be Yes or No"):
        read_pairs(bad)
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="needs the columns"):
        read_pairs(tmp_path / "cols.csv")
