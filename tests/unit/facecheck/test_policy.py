"""Scoring policy without models: every outcome, the reference rules and the embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from services.facecheck.encoder import DetectedFace
from services.facecheck.scoring import NO_FACE, EmbeddingCache, check_reference, primary_face, score_faces, to_box


def face(x: float, embedding: tuple[float, ...], *, side: float = 100, det_score: float = 0.9) -> DetectedFace:
    return DetectedFace(x=x, y=10, width=side, height=side, det_score=det_score,
                        landmarks=np.zeros((5, 2), np.float32), embedding=np.array(embedding, np.float32))


def cosine100(a: np.ndarray, b: np.ndarray) -> float:
    return max(0.0, 100 * float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))


REFERENCE = np.array([1.0, 0.0])


def test_no_face_scores_zero_and_says_so() -> None:
    outcome = score_faces(REFERENCE, [], cosine100)
    assert (outcome.score, outcome.faces_found, outcome.boxes, outcome.reason) == (0.0, 0, (), NO_FACE)


def test_one_face_is_scored_with_its_box() -> None:
    outcome = score_faces(REFERENCE, [face(5, (1.0, 1.0))], cosine100)
    assert outcome.score == 70.71 and outcome.faces_found == 1 and outcome.reason is None
    (box,) = outcome.boxes
    assert (box.x, box.y, box.width, box.height, box.det_score, box.similarity) == (5, 10, 100, 100, 0.9, 70.71)


def test_several_faces_score_the_best_match_and_list_every_box_with_its_similarity() -> None:
    faces = [face(0, (0.0, 1.0)), face(200, (1.0, 0.1)), face(400, (-1.0, 0.0))]
    outcome = score_faces(REFERENCE, faces, cosine100)
    assert outcome.faces_found == 3
    assert outcome.score == 99.5
    assert [b.similarity for b in outcome.boxes] == [0.0, 99.5, 0.0]
    assert [b.x for b in outcome.boxes] == [0, 200, 400]
    assert outcome.reason == "3 faces found; the best match is scored"


def test_the_primary_face_is_the_largest_then_the_most_confident() -> None:
    small, large = face(0, (1, 0), side=50), face(100, (0, 1), side=120)
    assert primary_face([small, large]) is large
    sure, unsure = face(0, (1, 0), det_score=0.99), face(100, (0, 1), det_score=0.6)
    assert primary_face([unsure, sure]) is sure
    assert primary_face([]) is None


def test_a_reference_without_a_face_is_refused_with_a_reason() -> None:
    check = check_reference([])
    assert not check.ok and check.faces_found == 0 and check.face is None
    assert check.reason.startswith(NO_FACE)


def test_a_reference_with_a_tiny_face_is_refused() -> None:
    check = check_reference([face(0, (1, 0), side=30)])
    assert not check.ok and check.faces_found == 1
    assert "too small (30x30 px)" in check.reason and "64 px" in check.reason


def test_a_reference_with_one_face_is_accepted_and_several_say_which_counts() -> None:
    one = check_reference([face(3, (1, 0))])
    assert one.ok and one.faces_found == 1 and one.face.x == 3 and one.reason is None
    several = check_reference([face(0, (1, 0), side=80), face(300, (0, 1), side=150)])
    assert several.ok and several.faces_found == 2 and several.face.x == 300
    assert several.reason == "2 faces found; the largest is the character's face"


def test_boxes_keep_detector_scores_in_range_and_two_decimals() -> None:
    box = to_box(face(-3.14159, (1, 0), det_score=1.3), 41.23456)
    assert box.x == -3.14 and box.det_score == 1.0 and box.similarity == 41.23


def test_the_embedding_cache_is_a_bounded_lru() -> None:
    cache = EmbeddingCache(2)
    a, b, c = (np.array([float(i)]) for i in range(3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # "a" is now the most recently used
    cache.put("c", c)
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2
    assert cache.get("b") is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_an_empty_cache_is_refused() -> None:
    with pytest.raises(ValueError):
        EmbeddingCache(0)
