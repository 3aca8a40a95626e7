"""The face family: how close a rendered face is to the character's reference face.

Every image gets a defined outcome: `FaceScored` (score 0 with a reason when no face is found)
or `FaceCheckFailed` when the image cannot be read at all.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Command, Event, ImageRef, StepAttempt
from contracts.fields import CharacterId, Reason, Score

__all__ = ["FaceBox", "FaceCheckFailed", "FaceScored", "ReferenceCheckReply", "ReferenceCheckRequest", "ScoreFace"]


class FaceBox(BaseModel):
    """One detected face, in pixels of the scored image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Detectors may place a box partly outside the image, so x and y may be negative.
    x: float
    y: float
    width: float = Field(gt=0)
    height: float = Field(gt=0)
    det_score: float = Field(ge=0, le=1)
    similarity: Score | None = None


class ScoreFace(StepAttempt, Command):
    """Compare the face in `image` with the character's reference face."""

    type: Literal["face.score"] = "face.score"
    version: Literal[1] = 1

    image: ImageRef
    reference_image: ImageRef
    character_id: CharacterId
    # The picture the attempt edited (the previous accepted step's): scored too, as `previous_score`.
    previous_image: ImageRef | None = None


class FaceScored(StepAttempt, Event):
    """The similarity score of an attempt, and the faces it was drawn from."""

    type: Literal["face.scored"] = "face.scored"
    version: Literal[1] = 1

    score: Score
    faces_found: int = Field(ge=0)
    boxes: tuple[FaceBox, ...] = ()
    # Model that made the embeddings, e.g. "insightface/buffalo_l"; scores compare only within one.
    encoder: str = Field(min_length=1)
    reason: str | None = None
    # Similarity of the scored face to the face of the command's `previous_image`; None when none was
    # given or it shows no face.
    previous_score: Score | None = None


class FaceCheckFailed(StepAttempt, Event):
    """The image could not be scored (unreadable, missing from the blob store, ...)."""

    type: Literal["face.check_failed"] = "face.check_failed"
    version: Literal[1] = 1

    reason: Reason


class ReferenceCheckRequest(BaseModel):
    """`likeness.rpc.face.check_reference`: may the stored image be a character's reference photo?"""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ReferenceCheckReply(BaseModel):
    """The answer to a reference check: `ok` with the face found, or why not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    faces_found: int = Field(default=0, ge=0)
    reason: str | None = None
    box: FaceBox | None = None

    def to_bytes(self) -> bytes:
        # A reference check compares with nothing, so a box's `similarity` would only ever be null.
        return self.model_dump_json(exclude={"box": {"similarity"}}).encode()
