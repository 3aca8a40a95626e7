"""The character family: who a character is and what their face looks like.

The chat service is the single writer of the stream `character-<character_id>`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from contracts.base import Event, ImageRef
from contracts.fields import CharacterId, Score, UserId

__all__ = ["CharacterCreated", "CharacterPersonaUpdated", "CharacterReferenceSet", "CharacterThresholdSet"]


class CharacterCreated(Event):
    """A character exists: a built-in one, or one a user made."""

    type: Literal["character.created"] = "character.created"
    version: Literal[1] = 1

    character_id: CharacterId
    name: str = Field(min_length=1, max_length=100)
    gender: Literal["woman", "man", "other"]
    personality: str = ""
    occupation: str = ""
    persona: str = ""
    art_style: str = Field(min_length=1)
    owner: UserId | None = None
    builtin: bool = False

    @model_validator(mode="after")
    def _owned_unless_builtin(self) -> CharacterCreated:
        if self.builtin == (self.owner is not None):
            raise ValueError("a built-in character has no owner; any other character has one")
        return self


class CharacterReferenceSet(Event):
    """The character's reference image, the face every picture is held to."""

    type: Literal["character.reference_set"] = "character.reference_set"
    version: Literal[1] = 1

    character_id: CharacterId
    image: ImageRef
    # Where the facecheck service cached the reference embedding, once it has one.
    face_embedding_key: str | None = None


class CharacterPersonaUpdated(Event):
    """The character's persona text changed; fields left None keep their value."""

    type: Literal["character.persona_updated"] = "character.persona_updated"
    version: Literal[1] = 1

    character_id: CharacterId
    persona: str
    personality: str | None = None
    occupation: str | None = None


class CharacterThresholdSet(Event):
    """The face similarity a step needs to be accepted for this character."""

    type: Literal["character.threshold_set"] = "character.threshold_set"
    version: Literal[1] = 1

    character_id: CharacterId
    threshold: Score
