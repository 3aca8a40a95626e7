"""dlib detection on a reduced copy: a render's face is found in one cheap pass; small faces still are found.

The real HOG detector runs behind a recorder that notes the size of every picture it is asked to
search and the upsampling, so the tests see which passes ran without timing anything.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.facecheck.dlib_encoder import DlibEncoder, load_dlib
from services.facecheck.encoder import decode_image
from tests.faces import PEOPLE, face_of, group_photo_path, no_face_image, two_faces_image

pytestmark = pytest.mark.integration


class Recorder:
    """dlib's detector, noting (longest side, upsample) of each run."""

    def __init__(self, detector) -> None:
        self.detector = detector
        self.runs: list[tuple[int, int]] = []

    def run(self, image: np.ndarray, upsample: int, threshold: float):
        self.runs.append((max(image.shape[:2]), upsample))
        return self.detector.run(image, upsample, threshold)


def recorded(encoder: DlibEncoder) -> Recorder:
    recorder = Recorder(encoder._detector)
    encoder._detector = recorder
    return recorder


@pytest.fixture(scope="module")
def encoders() -> tuple[DlibEncoder, DlibEncoder]:
    """The service's default (reduced first pass) and the full-size path of before."""
    return load_dlib(), load_dlib(detect_side=None)


def render() -> np.ndarray:
    # A render-like portrait: 1024x1024, the face about 430 px high (bench/facecheck.py's typical picture).
    return decode_image(face_of(2, size=1024, margin=0.7))


def test_a_renders_face_is_found_in_one_pass_at_half_size(encoders: tuple[DlibEncoder, DlibEncoder]) -> None:
    reduced, _ = encoders
    recorder = recorded(reduced)
    (face,) = reduced.encode(render())
    assert recorder.runs == [(512, 0)]
    # The box is in the picture's own pixels, not the reduced copy's.
    assert 300 < face.height < 600 and face.x + face.width <= 1024


def test_the_reduced_pass_embeds_the_same_face_as_the_full_one(encoders: tuple[DlibEncoder, DlibEncoder]) -> None:
    reduced, full = encoders
    (a,), (b,) = reduced.encode(render()), full.encode(render())
    assert reduced.similarity(a.embedding, b.embedding) > 90
    assert abs(a.x - b.x) < 0.1 * b.width and abs(a.height - b.height) < 0.2 * b.height


def test_small_faces_of_a_group_photo_send_it_to_the_larger_pass(encoders: tuple[DlibEncoder, DlibEncoder]) -> None:
    reduced, full = encoders
    photo = decode_image(group_photo_path().read_bytes())
    recorder = recorded(reduced)
    faces = reduced.encode(photo)
    # The reduced pass finds faces near HOG's limit there (73 px), so the picture is searched at 1024 px, where
    # all six are found without upsampling.
    assert recorder.runs == [(640, 0), (1024, 0)]
    assert len(faces) == PEOPLE == len(full.encode(photo))


def test_a_256_px_crop_with_two_faces_needs_no_upsampling(encoders: tuple[DlibEncoder, DlibEncoder]) -> None:
    reduced, _ = encoders
    recorder = recorded(reduced)
    assert len(reduced.encode(decode_image(two_faces_image()))) == 2
    assert recorder.runs == [(512, 0)]  # faces of ~104 px: well above HOG's smallest boxes


def test_no_face_tries_the_full_pass_before_saying_so(encoders: tuple[DlibEncoder, DlibEncoder]) -> None:
    reduced, _ = encoders
    recorder = recorded(reduced)
    assert reduced.encode(decode_image(no_face_image())) == []
    # 256 px: no reduction, so the first pass is the picture itself without upsampling, then upsampled once.
    assert recorder.runs == [(256, 0), (256, 1)]
