"""Scoring against the reference and the picture an attempt edited: one encoding of the image, the edited
picture embedded once per step, an unmeasurable edited picture leaving the previous score empty."""

from __future__ import annotations

import hashlib

from contracts.face import FaceScored

from services.facecheck.checker import FaceChecker
from services.facecheck.handlers import score_command
from services.facecheck.previous import score_with_previous
from tests.unit.facecheck.fakes import FakeEncoder, picture
from tests.unit.facecheck.test_service import MemoryBlobs, command, ref

RED, ALSO_RED, PINK, BLUE = (200, 0, 0), (190, 10, 0), (200, 0, 120), (0, 0, 200)
REFERENCE = picture((20, 20, 80, RED))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_character_is_scored_against_the_reference_and_against_the_picture_it_edited() -> None:
    checker = FaceChecker(FakeEncoder())
    edited = picture((30, 30, 60, PINK))   # the last picture had drifted to pink
    image = picture((0, 0, 30, BLUE), (60, 60, 50, ALSO_RED))  # a stranger, and the character back to red
    outcome, previous = score_with_previous(checker, image, REFERENCE, edited, reference_sha256=sha(REFERENCE),
                                            previous_sha256=sha(edited))
    plain = checker.score(image, REFERENCE)
    assert outcome == plain and outcome.score > 99
    # The character's face (the red one, not the stranger) against the pink one of the edited picture.
    cosine = 100 * (190 * 200 + 0) / ((190**2 + 10**2) ** 0.5 * (200**2 + 120**2) ** 0.5)
    assert previous is not None and abs(previous - cosine) < 0.01 and previous < outcome.score


def test_the_edited_picture_is_embedded_once_for_every_attempt_of_a_step() -> None:
    encoder = FakeEncoder()
    checker = FaceChecker(encoder)
    edited = picture((30, 30, 60, ALSO_RED))
    for _ in range(3):
        score_with_previous(checker, picture((30, 30, 70, ALSO_RED)), REFERENCE, edited,
                            reference_sha256=sha(REFERENCE), previous_sha256=sha(edited))
    assert encoder.calls == 1 + 1 + 3  # the reference, the edited picture, three attempts


def test_no_face_in_the_edited_picture_or_in_the_image_leaves_the_step_unmeasured() -> None:
    checker = FaceChecker(FakeEncoder())
    blank = picture()
    _, previous = score_with_previous(checker, picture((30, 30, 70, ALSO_RED)), REFERENCE, blank,
                                      reference_sha256=sha(REFERENCE), previous_sha256=sha(blank))
    assert previous is None
    outcome, previous = score_with_previous(checker, blank, REFERENCE, REFERENCE, reference_sha256=sha(REFERENCE),
                                            previous_sha256=sha(REFERENCE))
    assert (outcome.faces_found, previous) == (0, None)
    _, previous = score_with_previous(checker, picture((30, 30, 70, ALSO_RED)), REFERENCE, b"not an image",
                                      reference_sha256=sha(REFERENCE), previous_sha256="0" * 64)
    assert previous is None


async def test_the_handler_answers_with_the_previous_score_and_survives_a_missing_previous_picture() -> None:
    edited = picture((30, 30, 60, PINK))
    image = picture((30, 30, 70, ALSO_RED))
    message = command(ref(image)).model_copy(update={"previous_image": ref(edited)})
    result = await score_command(message, MemoryBlobs(REFERENCE, image, edited), FaceChecker(FakeEncoder()))
    assert isinstance(result, FaceScored) and result.score > 99 and result.previous_score is not None
    assert result.previous_score < 90
    lost = await score_command(message, MemoryBlobs(REFERENCE, image), FaceChecker(FakeEncoder()))
    assert isinstance(lost, FaceScored) and lost.score == result.score and lost.previous_score is None
    plain = await score_command(command(ref(image)), MemoryBlobs(REFERENCE, image), FaceChecker(FakeEncoder()))
    assert isinstance(plain, FaceScored) and plain.previous_score is None


class CountingBlobs(MemoryBlobs):
    def __init__(self, *blobs: bytes) -> None:
        super().__init__(*blobs)
        self.fetched: list[str] = []

    async def get(self, sha256: str) -> bytes:
        self.fetched.append(sha256)
        return await super().get(sha256)


async def test_the_reference_and_the_edited_picture_are_fetched_once_for_every_attempt_of_a_step() -> None:
    edited = picture((30, 30, 60, PINK))
    attempts = [picture((30, 30, 70, ALSO_RED)), picture((30, 30, 70, BLUE)), picture((30, 30, 70, RED))]
    blobs, checker = CountingBlobs(REFERENCE, edited, *attempts), FaceChecker(FakeEncoder())
    results = [await score_command(command(ref(image)).model_copy(update={"previous_image": ref(edited)}), blobs,
                                   checker) for image in attempts]
    assert all(isinstance(r, FaceScored) and r.previous_score is not None for r in results)
    assert blobs.fetched.count(sha(edited)) == 1 and blobs.fetched.count(sha(REFERENCE)) == 1
    # The same scores as a checker that embeds the edited picture afresh each time.
    fresh = [await score_command(command(ref(image)).model_copy(update={"previous_image": ref(edited)}),
                                 MemoryBlobs(REFERENCE, edited, image), FaceChecker(FakeEncoder())) for image in attempts]
    assert [r.previous_score for r in results] == [r.previous_score for r in fresh]
