"""The insightface backend: SCRFD detection with 5 landmarks, `norm_crop` alignment, ArcFace embedding, on onnxruntime.

The model pack is a local folder (e.g. buffalo_l, or any folder holding an SCRFD/RetinaFace detector and
an ArcFace-style ONNX recognizer); nothing is ever downloaded: a missing or incomplete folder is a start-up
`ModelPackError` naming what is missing. Its manifest (`likeness-recognizer.json`, see `manifest`) names
the recognizer file, input size, licence and calibration file; the service refuses a licence the
deployment does not allow. Score = the calibration of cosine (without one: cosine × 100, clamped).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path

import numpy as np

from services.facecheck.calibration import Calibration
from services.facecheck.calibration_files import load_calibration
from services.facecheck.encoder import DetectedFace, cosine
from services.facecheck.errors import BackendUnavailable, ModelPackError
from services.facecheck.manifest import MANIFEST, check_licence, read_manifest

__all__ = ["InsightFaceEncoder", "choose_providers", "load_insightface"]

_TASKS = ("detection", "recognition")
_WHAT = {"detection": "face detector (SCRFD/RetinaFace)", "recognition": "recognition model (ArcFace)"}


class InsightFaceEncoder:
    """An insightface `FaceAnalysis` (detection + recognition) behind the `FaceEncoder` protocol."""

    metric = "cosine"

    def __init__(self, app, *, name: str, calibration: Calibration | None = None) -> None:
        self._app = app
        self.name = name
        # Uncalibrated: cosine x 100, what insightface's scores always were.
        self.calibration = calibration or Calibration(name, "cosine", ((0.0, 0.0), (1.0, 100.0)))

    @property
    def providers(self) -> list[str]:
        """The onnxruntime execution providers the recognition session runs on."""
        return list(self._app.models["recognition"].session.get_providers())

    def encode(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face of an RGB uint8 image, with its 5 landmarks and ArcFace embedding."""
        # insightface works in OpenCV's BGR order.
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        faces = []
        for face in self._app.get(bgr):
            x0, y0, x1, y1 = (float(v) for v in face.bbox)
            faces.append(DetectedFace(
                x=x0, y=y0, width=x1 - x0, height=y1 - y0,
                det_score=min(1.0, max(0.0, float(face.det_score))),
                landmarks=np.asarray(face.kps, dtype=np.float32),
                embedding=np.asarray(face.normed_embedding, dtype=np.float32),
            ))
        return faces

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return self.calibration.score(cosine(a, b))


def choose_providers() -> list[str]:
    """CUDA when this onnxruntime build and machine have it, else CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in available \
        else ["CPUExecutionProvider"]


def load_insightface(
    model_dir: Path,
    *,
    det_size: int = 640,
    det_thresh: float = 0.5,
    providers: list[str] | None = None,
    allowed_licences: Collection[str] | None = None,
) -> InsightFaceEncoder:
    """Load detection and recognition from the pack in `model_dir`; refuses a folder lacking either.

    `allowed_licences`: the deployment's rule (the service passes it; tools that only measure, not).
    """
    try:
        from insightface.app import FaceAnalysis
    except ImportError as exc:
        raise BackendUnavailable(f"the insightface backend needs insightface and onnxruntime: {exc}") from None
    folder = Path(model_dir).expanduser().resolve()
    # FaceAnalysis downloads a pack by name when its folder is missing: check first, so it never can.
    if not folder.is_dir():
        raise ModelPackError(f"insightface model folder {folder} does not exist (LIKENESS_FACE_MODEL_DIR)")
    files = sorted(p.name for p in folder.iterdir() if p.suffix == ".onnx" or p.name == "manifest.json")
    if not files:
        raise ModelPackError(f"insightface model folder {folder} holds no .onnx model files; "
                             f"it needs a {_WHAT['detection']} and a {_WHAT['recognition']}")
    manifest = read_manifest(folder)
    # Before any model is loaded: a refused licence must not depend on the weights being readable.
    if allowed_licences is not None:
        check_licence(folder, manifest, allowed_licences)
    try:
        app = FaceAnalysis(name=str(folder), allowed_modules=list(_TASKS), providers=providers or choose_providers())
    # FaceAnalysis says "no detector" with a bare assert (a KeyError under -O); other failures are unreadable files.
    except (AssertionError, KeyError):
        raise ModelPackError(_missing(folder, ["detection"], files)) from None
    except Exception as exc:  # noqa: BLE001 - onnx/onnxruntime raise many types for damaged or foreign files
        raise ModelPackError(f"insightface model folder {folder}: cannot load: {type(exc).__name__}: {exc}") from None
    missing = [task for task in _TASKS if task not in app.models]
    if missing:
        raise ModelPackError(_missing(folder, missing, files))
    # insightface's norm_crop calls a scikit-image method deprecated in 0.26; once per face is log noise, not news.
    warnings.filterwarnings("ignore", message=r".*`estimate` is deprecated", category=FutureWarning)
    app.prepare(ctx_id=0, det_size=(det_size, det_size), det_thresh=det_thresh)
    name = (manifest.name if manifest else None) or f"insightface/{folder.name}"
    calibration = None
    if manifest is not None:
        recognition = app.models["recognition"]
        if Path(recognition.model_file).name != manifest.model:
            raise ModelPackError(f"{folder / MANIFEST} names {manifest.model} but the recognition model found "
                                 f"is {Path(recognition.model_file).name}: keep one recognizer in the folder")
        if tuple(recognition.input_size) != (manifest.input_size, manifest.input_size):
            raise ModelPackError(f"{folder / MANIFEST}: input_size {manifest.input_size} but {manifest.model} takes "
                                 f"{recognition.input_size[0]}x{recognition.input_size[1]}")
        if manifest.calibration is not None:
            calibration = load_calibration(folder / manifest.calibration, recognizer=name)
            if calibration.metric != "cosine":
                raise ModelPackError(f"{folder / manifest.calibration}: an ArcFace recognizer compares by cosine, "
                                     f"not {calibration.metric}")
    return InsightFaceEncoder(app, name=name, calibration=calibration)


def _missing(folder: Path, tasks: list[str], files: list[str]) -> str:
    needed = " and ".join(_WHAT[task] for task in tasks)
    return f"insightface model folder {folder} has no {needed} among: {', '.join(files)}"
