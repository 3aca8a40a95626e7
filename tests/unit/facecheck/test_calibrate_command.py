"""The calibrate edge on the fake encoder: each image embedded once, faceless and unreadable images reported
and their pairs skipped, and the report's figures."""

from __future__ import annotations

from pathlib import Path

from services.facecheck.calibrate import Pair, calibrate, report
from tests.unit.facecheck.fakes import FakeEncoder, picture

# Colours are identities: two reds are the same person, red and blue are not.
PHOTOS = {"red1.png": (250, 10, 10), "red2.png": (240, 30, 20), "blue1.png": (10, 10, 250),
          "blue2.png": (30, 20, 240), "green1.png": (10, 250, 10)}


def photos(folder: Path) -> Path:
    for name, colour in PHOTOS.items():
        (folder / name).write_bytes(picture((30, 30, 60, colour)))
    (folder / "empty.png").write_bytes(picture())
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def test_each_image_is_embedded_once_and_faceless_pairs_are_skipped(tmp_path: Path) -> None:
    pairs = [Pair("red1.png", "red2.png", True), Pair("blue1.png", "blue2.png", True),
             Pair("red1.png", "blue1.png", False), Pair("red2.png", "green1.png", False),
             Pair("blue2.png", "green1.png", False), Pair("red1.png", "empty.png", True),
             Pair("broken.png", "blue1.png", False), Pair("empty.png", "green1.png", False)]
    encoder = FakeEncoder()
    result = calibrate(encoder, pairs, photos(tmp_path), source="pairs.csv")
    assert encoder.calls == 6  # seven distinct files, one unreadable never reaches the encoder
    assert result.no_face == ["empty.png"] and result.unreadable[0].startswith("broken.png (")
    assert result.skipped_pairs == 3 and len(result.scores) == 5
    assert result.fitted.feasible
    same = [s.score for s in result.scores if s.pair.same]
    different = [s.score for s in result.scores if not s.pair.same]
    assert min(same) >= 40 > max(different)
    meta = result.calibration.meta
    assert meta["fitted_on"]["skipped_pairs"] == 3 and meta["fitted_on"]["same_pairs"] == 2
    assert meta["figures"] == {"auc": 1.0, "eer": 0.0, "same_rejected_at_threshold": 0,
                               "different_accepted_at_threshold": 0}
    text = report(result)
    assert "pairs: 2 same person, 3 different, 3 skipped" in text
    assert "images without a face: empty.png" in text and "AUC 1.0000" in text
    assert "      40    0/2       0.0%      0/3       0.0%  <- default" in text
