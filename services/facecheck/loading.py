"""Builds the configured `FaceEncoder` at start-up: insightface when a model pack is configured, dlib otherwise."""

from __future__ import annotations

from services.facecheck.encoder import FaceEncoder
from services.facecheck.settings import FacecheckSettings

__all__ = ["load_encoder"]


def load_encoder(settings: FacecheckSettings) -> FaceEncoder:
    """Load the backend the settings name; `ModelPackError`/`BackendUnavailable` say what is missing."""
    if settings.resolved_backend == "insightface":
        from services.facecheck.insightface_encoder import load_insightface

        assert settings.face_model_dir is not None  # the settings validator guarantees it
        return load_insightface(settings.face_model_dir, det_size=settings.face_det_size,
                                det_thresh=settings.face_det_threshold)
    from services.facecheck.dlib_encoder import load_dlib

    return load_dlib(upsample=settings.face_dlib_upsample)
