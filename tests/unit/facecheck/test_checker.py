"""`FaceChecker` on image bytes with a fake encoder: outcomes, reference cache, reference validation."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from services.facecheck.checker import FaceChecker, validate_reference
from services.facecheck.encoder import decode_image
from services.facecheck.errors import NoReferenceFace, UnreadableImage
from services.facecheck.scoring import NO_FACE
from tests.unit.facecheck.fakes import FakeEncoder, picture

RED, ALSO_RED, BLUE = (200, 0, 0), (190, 10, 0), (0, 0, 200)
REFERENCE = picture((20, 20, 80, RED))


def test_the_same_face_scores_high_and_another_low() -> None:
    checker = FaceChecker(FakeEncoder())
    assert checker.score(picture((30, 30, 70, ALSO_RED)), REFERENCE).score > 99
    other = checker.score(picture((30, 30, 70, BLUE)), REFERENCE)
    assert other.score == 0.0 and other.faces_found == 1


def test_an_image_without_a_face_scores_zero_with_the_reason() -> None:
    outcome = FaceChecker(FakeEncoder()).score(picture(), REFERENCE)
    assert (outcome.score, outcome.faces_found, outcome.reason) == (0.0, 0, NO_FACE)


def test_two_faces_score_the_best_match() -> None:
    outcome = FaceChecker(FakeEncoder()).score(picture((0, 0, 40, BLUE), (60, 60, 40, ALSO_RED)), REFERENCE)
    assert outcome.faces_found == 2 and outcome.score > 99
    assert [round(b.similarity) for b in outcome.boxes] == [0, 100]


def test_the_reference_embedding_is_computed_once_per_sha256() -> None:
    encoder = FakeEncoder()
    checker = FaceChecker(encoder, cache_size=4)
    sha = hashlib.sha256(REFERENCE).hexdigest()
    for _ in range(3):
        checker.score(picture((30, 30, 70, ALSO_RED)), REFERENCE, reference_sha256=sha)
    assert encoder.calls == 1 + 3  # one reference, three images
    assert sha in checker.cache and checker.cache.hits == 2
    checker.score(picture((30, 30, 70, ALSO_RED)), REFERENCE)  # no sha given: hashed here, same key
    assert encoder.calls == 5 and checker.cache.hits == 3


def test_a_reference_without_a_face_is_an_error_that_names_it() -> None:
    blank = picture()
    with pytest.raises(NoReferenceFace, match=hashlib.sha256(blank).hexdigest()[:12]):
        FaceChecker(FakeEncoder()).score(picture((30, 30, 70, RED)), blank)


def test_unreadable_bytes_are_an_error_for_image_and_reference() -> None:
    checker = FaceChecker(FakeEncoder())
    with pytest.raises(UnreadableImage, match="not a PNG, JPEG or WebP"):
        checker.score(b"hello", REFERENCE)
    with pytest.raises(UnreadableImage, match="reference image"):
        checker.score(REFERENCE, b"\x89PNG\r\n\x1a\n" + b"\0" * 64)


def test_truncated_and_foreign_images_are_unreadable() -> None:
    with pytest.raises(UnreadableImage, match="damaged image"):
        decode_image(REFERENCE[: len(REFERENCE) // 2])
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    with pytest.raises(UnreadableImage):
        decode_image(gif.getvalue())


def test_decoding_turns_a_jpeg_upright_per_its_exif_orientation() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.new("RGB", (40, 20), (255, 255, 255)).save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).shape == (40, 20, 3)


def test_validate_reference_never_raises_on_bad_bytes() -> None:
    encoder = FakeEncoder()
    assert validate_reference(REFERENCE, encoder).ok
    bad = validate_reference(b"not an image", encoder)
    assert not bad.ok and bad.reason.startswith("unreadable image")
    blank = FaceChecker(encoder).validate_reference(picture())
    assert not blank.ok and blank.reason.startswith(NO_FACE)
