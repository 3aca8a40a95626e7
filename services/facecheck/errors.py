"""Errors of the facecheck service.

    FacecheckError
    ├── BackendUnavailable   the chosen backend's Python package is not installed
    ├── ModelPackError       model files missing, incomplete or unreadable (a start-up error)
    │   └── LicenceRefused   the model's licence is not among those the deployment allows
    ├── UnreadableImage      bytes that are not a PNG, JPEG or WebP image we can decode
    └── NoReferenceFace      the character's reference image holds no face to compare with
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable", "FacecheckError", "LicenceRefused", "ModelPackError", "NoReferenceFace", "UnreadableImage",
]


class FacecheckError(Exception):
    """Base of every facecheck error."""


class BackendUnavailable(FacecheckError):
    """The backend's package (insightface, dlib) cannot be imported."""


class ModelPackError(FacecheckError):
    """The model files are missing or incomplete; the message names the folder and what is missing."""


class LicenceRefused(ModelPackError):
    """The face model's licence is not allowed by LIKENESS_FACE_ALLOWED_LICENCES (a start-up error)."""


class UnreadableImage(FacecheckError):
    """The image bytes cannot be decoded."""


class NoReferenceFace(FacecheckError):
    """The reference image has no face, so nothing can be scored against it."""
