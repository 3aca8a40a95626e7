"""Scoring policy, pure: which face counts, what each outcome records, reference rules, the embedding cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from contracts.face import FaceBox
from services.facecheck.encoder import DetectedFace

__all__ = [
    "MIN_REFERENCE_FACE_PX",
    "NO_FACE",
    "EmbeddingCache",
    "Outcome",
    "ReferenceCheck",
    "check_reference",
    "primary_face",
    "score_faces",
    "to_box",
]

NO_FACE = "no face found"
# Below this height a face is a few dozen pixels of identity: too little to be a character's reference.
MIN_REFERENCE_FACE_PX = 64

Similarity = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Outcome:
    """What a `FaceScored` event records for one scored image."""

    score: float
    faces_found: int
    boxes: tuple[FaceBox, ...]
    reason: str | None = None


@dataclass(frozen=True)
class ReferenceCheck:
    """Whether an image can serve as a character's reference face, and why not."""

    ok: bool
    faces_found: int
    # The face that scoring will compare against (the largest), when there is one.
    face: FaceBox | None
    reason: str | None = None


def score_faces(reference: np.ndarray, faces: Sequence[DetectedFace], similarity: Similarity) -> Outcome:
    """Score every face against the reference; the best match is the image's score."""
    if not faces:
        return Outcome(score=0.0, faces_found=0, boxes=(), reason=NO_FACE)
    scores = [_round(similarity(reference, face.embedding)) for face in faces]
    boxes = tuple(to_box(face, score) for face, score in zip(faces, scores))
    # An edit may add people (a crowd, a mirror); the character is the face most like the reference.
    reason = None if len(faces) == 1 else f"{len(faces)} faces found; the best match is scored"
    return Outcome(score=max(scores), faces_found=len(faces), boxes=boxes, reason=reason)


def primary_face(faces: Sequence[DetectedFace]) -> DetectedFace | None:
    """The face a reference stands for: the largest, then the most confident."""
    return max(faces, key=lambda face: (face.area, face.det_score), default=None)


def check_reference(faces: Sequence[DetectedFace], *, min_face_px: int = MIN_REFERENCE_FACE_PX) -> ReferenceCheck:
    """Accept a reference with at least one clear face; say which face counts when there are several."""
    face = primary_face(faces)
    if face is None:
        return ReferenceCheck(ok=False, faces_found=0, face=None,
                              reason=f"{NO_FACE}: a reference image needs one clear, front-facing face")
    box = to_box(face)
    if min(face.width, face.height) < min_face_px:
        return ReferenceCheck(ok=False, faces_found=len(faces), face=box,
                              reason=f"the face is too small ({face.width:.0f}x{face.height:.0f} px); "
                                     f"a reference needs a face at least {min_face_px} px high")
    if len(faces) > 1:
        return ReferenceCheck(ok=True, faces_found=len(faces), face=box,
                              reason=f"{len(faces)} faces found; the largest is the character's face")
    return ReferenceCheck(ok=True, faces_found=1, face=box)


def to_box(face: DetectedFace, similarity: float | None = None) -> FaceBox:
    """The contract's `FaceBox` of a detected face."""
    return FaceBox(x=_round(face.x), y=_round(face.y), width=max(_round(face.width), 0.01),
                   height=max(_round(face.height), 0.01), det_score=round(min(1.0, max(0.0, face.det_score)), 4),
                   similarity=None if similarity is None else _round(similarity))


def _round(value: float) -> float:
    # Events keep two decimals: float noise below that differs between machines and means nothing.
    return round(float(value), 2)


class EmbeddingCache:
    """Bounded LRU of reference embeddings by the reference image's sha256; safe across threads."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("an embedding cache holds at least one entry")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, sha256: str) -> np.ndarray | None:
        with self._lock:
            embedding = self._entries.get(sha256)
            if embedding is None:
                self.misses += 1
                return None
            self._entries.move_to_end(sha256)
            self.hits += 1
            return embedding

    def put(self, sha256: str, embedding: np.ndarray) -> None:
        with self._lock:
            self._entries[sha256] = embedding
            self._entries.move_to_end(sha256)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._entries
