"""Scoring an attempt against the reference AND the picture it edited (the drift budget's measure).

The image is encoded once for both; the edited picture's face is embedded once per step (every attempt
of a step edits the same picture) and cached beside the reference embeddings. Blocking, CPU bound.
"""

from __future__ import annotations

import numpy as np

from services.facecheck.checker import FaceChecker
from services.facecheck.encoder import decode_image
from services.facecheck.errors import UnreadableImage
from services.facecheck.scoring import Outcome

__all__ = ["cached_previous", "score_with_previous"]


def cached_previous(checker: FaceChecker, *, reference_sha256: str, previous_sha256: str) -> np.ndarray | None:
    """The edited picture's face embedding when an earlier attempt of the step already made it: then the
    picture need not be fetched again (pass this as `previous`)."""
    return checker.cache.get(_key(previous_sha256, reference_sha256))


def score_with_previous(checker: FaceChecker, image: bytes, reference: bytes | np.ndarray,
                        previous: bytes | np.ndarray, *, reference_sha256: str,
                        previous_sha256: str) -> tuple[Outcome, float | None]:
    """The outcome against the reference, and the character's face's similarity to its face in `previous`
    (the picture, or its embedding from `cached_previous`; None when either picture shows no face, or
    `previous` cannot be read: the step is then unmeasured)."""
    outcome, target, faces = checker.scored_faces(image, reference, reference_sha256=reference_sha256)
    if not faces:
        return outcome, None
    before = _previous_embedding(checker, previous, target, key=_key(previous_sha256, reference_sha256))
    if before is None:
        return outcome, None
    # The character is the face most like the reference, in both pictures (an edit may add people).
    face = max(faces, key=lambda f: checker.encoder.similarity(target, f.embedding))
    return outcome, round(min(100.0, max(0.0, float(checker.encoder.similarity(before, face.embedding)))), 2)


def _key(previous_sha256: str, reference_sha256: str) -> str:
    return f"previous:{previous_sha256}:{reference_sha256}"


def _previous_embedding(checker: FaceChecker, previous: bytes | np.ndarray, target: np.ndarray, *,
                        key: str) -> np.ndarray | None:
    if isinstance(previous, np.ndarray):
        return previous
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
