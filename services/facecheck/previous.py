"""Scoring an attempt against the reference AND the picture it edited (the drift budget's measure).

The image is encoded once for both; the edited picture's face is embedded once per step (every attempt
of a step edits the same picture) and cached beside the reference embeddings. Blocking, CPU bound.
"""

from __future__ import annotations

import numpy as np

from services.facecheck.checker import FaceChecker
from services.facecheck.encoder import decode_image
from services.facecheck.errors import UnreadableImage
from services.facecheck.scoring import Outcome, score_faces

__all__ = ["score_with_previous"]


def score_with_previous(checker: FaceChecker, image: bytes, reference: bytes, previous: bytes, *,
                        reference_sha256: str, previous_sha256: str) -> tuple[Outcome, float | None]:
    """The outcome against the reference, and the character's face's similarity to its face in `previous`
    (None when either picture shows no face, or `previous` cannot be read: the step is then unmeasured)."""
    target = checker.reference_embedding(reference, sha256=reference_sha256)
    faces = checker.encoder.encode(decode_image(image))
    outcome = score_faces(target, faces, checker.encoder.similarity)
    if not faces:
        return outcome, None
    before = _previous_embedding(checker, previous, target, key=f"previous:{previous_sha256}:{reference_sha256}")
    if before is None:
        return outcome, None
    # The character is the face most like the reference, in both pictures (an edit may add people).
    face = max(faces, key=lambda f: checker.encoder.similarity(target, f.embedding))
    return outcome, round(min(100.0, max(0.0, float(checker.encoder.similarity(before, face.embedding)))), 2)


def _previous_embedding(checker: FaceChecker, previous: bytes, target: np.ndarray, *, key: str) -> np.ndarray | None:
    cached = checker.cache.get(key)
    if cached is not None:
        return cached
    try:
        faces = checker.encoder.encode(decode_image(previous))
    except UnreadableImage:
        return None
    if not faces:
        return None
    embedding = max(faces, key=lambda f: checker.encoder.similarity(target, f.embedding)).embedding
    checker.cache.put(key, embedding)
    return embedding
