"""Face checks on image bytes: score an image against a reference (embedding cached), validate a reference image.

Blocking and CPU bound: the service calls these from a worker thread.
"""

from __future__ import annotations

import hashlib

import numpy as np

from services.facecheck.encoder import DetectedFace, FaceEncoder, decode_image
from services.facecheck.errors import NoReferenceFace, UnreadableImage
from services.facecheck.scoring import (
    MIN_REFERENCE_FACE_PX,
    EmbeddingCache,
    Outcome,
    ReferenceCheck,
    check_reference,
    primary_face,
    score_faces,
)

__all__ = ["FaceChecker", "validate_reference"]


class FaceChecker:
    """One encoder plus the cache of reference embeddings."""

    def __init__(self, encoder: FaceEncoder, *, cache_size: int = 256) -> None:
        self.encoder = encoder
        self.cache = EmbeddingCache(cache_size)

    def score(self, image: bytes, reference: bytes | np.ndarray, *, reference_sha256: str | None = None) -> Outcome:
        """Score the faces of `image` against the reference face; `UnreadableImage`, `NoReferenceFace` otherwise."""
        return self.scored_faces(image, reference, reference_sha256=reference_sha256)[0]

    def scored_faces(self, image: bytes, reference: bytes | np.ndarray, *, reference_sha256: str | None = None
                     ) -> tuple[Outcome, np.ndarray, list[DetectedFace]]:
        """`score`'s outcome with what it was drawn from: the reference's embedding and the faces of `image`."""
        target = self.reference_embedding(reference, sha256=reference_sha256)
        faces = self.encoder.encode(decode_image(image))
        return score_faces(target, faces, self.encoder.similarity), target, faces

    def reference_embedding(self, reference: bytes | np.ndarray, *, sha256: str | None = None) -> np.ndarray:
        """The embedding of the reference's face (the largest), from the cache when its sha256 was seen; `reference`
        may be that embedding already (`cached_reference`), so a cached reference need not be fetched again."""
        if isinstance(reference, np.ndarray):
            return reference
        # Same bytes, same embedding: the sha256 names the picture, so a character's new reference is a new key.
        key = sha256 or hashlib.sha256(reference).hexdigest()
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        try:
            faces = self.encoder.encode(decode_image(reference))
        except UnreadableImage as exc:
            raise UnreadableImage(f"reference image {key[:12]}: {exc}") from None
        face = primary_face(faces)
        if face is None:
            raise NoReferenceFace(f"reference image {key[:12]} has no face; the character needs a reference "
                                  f"with one clear face")
        self.cache.put(key, face.embedding)
        return face.embedding

    def cached_reference(self, sha256: str) -> np.ndarray | None:
        """The reference's embedding when this process has made it (pass it as `reference`), else None."""
        return self.cache.get(sha256)

    def validate_reference(self, image: bytes, *, min_face_px: int = MIN_REFERENCE_FACE_PX) -> ReferenceCheck:
        """Whether `image` can be a character's reference (see `validate_reference`)."""
        return validate_reference(image, self.encoder, min_face_px=min_face_px)


def validate_reference(
    image: bytes, encoder: FaceEncoder, *, min_face_px: int = MIN_REFERENCE_FACE_PX
) -> ReferenceCheck:
    """Check a candidate reference image: readable, at least one face, large enough; never raises for bad bytes."""
    try:
        pixels = decode_image(image)
    except UnreadableImage as exc:
        return ReferenceCheck(ok=False, faces_found=0, face=None, reason=f"unreadable image: {exc}")
    return check_reference(encoder.encode(pixels), min_face_px=min_face_px)
