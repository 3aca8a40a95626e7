"""The character family: who a character is and what their face looks like.

The chat service is the single writer of the streams `character-<character_id>` and, for the
reference photo each user gives a built-in character, `reference-<character_id>-<user digest>`
(`contracts.streams`). It answers every character command with an event on the stream the command
is about whose envelope `causation_id` is the command's `event_id`: the change itself, or
`CharacterRefused` saying why not. A reference for a built-in character goes to the user's own
stream; every other command, and a custom character's reference, to `character-<character_id>`.
The planner is the single writer of `threshold-<character_id>-<reference digest>`: the scores the character's
accepted steps reached against that reference, and the threshold learned from them.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field, model_validator

from contracts.base import Command, Event, ImageRef
from contracts.fields import CharacterId, Reason, Score, UserId

__all__ = [
    "CharacterCreated",
    "CharacterPersonaUpdated",
    "CharacterReferenceSet",
    "CharacterRefused",
    "CharacterScoreKept",
    "CharacterThresholdLearned",
    "CharacterThresholdSet",
    "CreateCharacter",
    "SetCharacterReference",
    "UpdatePersona",
]

# A persona is a system prompt: long enough for a character sheet, short enough to leave room for the chat.
_PERSONA_MAX = 4000
_TRAIT_MAX = 200


class CreateCharacter(Command):
    """A user makes a character of their own, optionally with its reference image."""

    type: Literal["character.create"] = "character.create"
    version: Literal[1] = 1

    character_id: CharacterId
    name: str = Field(min_length=1, max_length=100)
    gender: Literal["woman", "man", "other"]
    personality: str = Field(default="", max_length=_TRAIT_MAX)
    occupation: str = Field(default="", max_length=_TRAIT_MAX)
    persona: str = Field(default="", max_length=_PERSONA_MAX)
    art_style: str = Field(min_length=1)
    owner: UserId
    reference_image: ImageRef | None = None


class SetCharacterReference(Command):
    """Give a character the photo its face is held to: a custom character's owner sets its reference;
    anyone may give a built-in character a reference, which then serves only them."""

    type: Literal["character.set_reference"] = "character.set_reference"
    version: Literal[1] = 1

    character_id: CharacterId
    image: ImageRef
    requested_by: UserId


class UpdatePersona(Command):
    """The owner rewrites a custom character's persona; fields left None keep their value."""

    type: Literal["character.update_persona"] = "character.update_persona"
    version: Literal[1] = 1

    character_id: CharacterId
    persona: str = Field(max_length=_PERSONA_MAX)
    personality: str | None = Field(default=None, max_length=_TRAIT_MAX)
    occupation: str | None = Field(default=None, max_length=_TRAIT_MAX)
    requested_by: UserId


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
    # Set: this user's own reference of a built-in character (stream `user_reference_stream`), seen by
    # nobody else. None: the character's reference, set by its owner. (Old logs may hold a None on a
    # built-in character: a reference shared by every user, which is no longer used.)
    for_user: UserId | None = None


class CharacterPersonaUpdated(Event):
    """The character's persona text changed; fields left None keep their value."""

    type: Literal["character.persona_updated"] = "character.persona_updated"
    version: Literal[1] = 1

    character_id: CharacterId
    persona: str
    personality: str | None = None
    occupation: str | None = None
    # Set for a built-in character: this user's own persona of it, recorded in their `reference-*` stream
    # (a built-in's persona is shared and follows its file; each user may adjust it for themselves).
    for_user: UserId | None = None


class CharacterThresholdSet(Event):
    """The face similarity a step needs to be accepted for this character."""

    type: Literal["character.threshold_set"] = "character.threshold_set"
    version: Literal[1] = 1

    character_id: CharacterId
    threshold: Score


class CharacterScoreKept(Event):
    """A step of a chain of this character was accepted by its face score: one sample for learning its threshold.

    Written by the planner to `threshold_stream(character_id, reference sha256)`: scores compare only against
    the one reference they were measured with (each user gives a built-in character their own).
    """

    type: Literal["character.score_kept"] = "character.score_kept"
    version: Literal[1] = 1

    character_id: CharacterId
    reference_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    chain_id: UUID
    step: int = Field(ge=0)
    score: Score


class CharacterThresholdLearned(Event):
    """The threshold the planner learned from the character's kept scores: the scores, the rule, the result.

    A `CharacterThresholdSet` (by hand) wins over it. Recorded each time the result changes.
    """

    type: Literal["character.threshold_learned"] = "character.threshold_learned"
    version: Literal[1] = 1

    character_id: CharacterId
    reference_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    threshold: Score
    scores: tuple[Score, ...] = Field(min_length=1)
    # The rule in words with its parameters, e.g. "q0.1 of 12 kept scores - 5, within [25, 40]".
    rule: str = Field(min_length=1)
    # The lower-tail quantile of `scores` before the margin and the bounds.
    quantile_score: Score


class CharacterRefused(Event):
    """A character command was not carried out; `rule` says which rule, `reason` says it to a person.

    Rules: `character.exists` (the id is taken), `character.unknown` (no such character),
    `character.not_owner` (someone else's character), `character.builtin_read_only`
    (built-in personas are not edited per user).
    """

    type: Literal["character.refused"] = "character.refused"
    version: Literal[1] = 1

    character_id: CharacterId
    # The refused command's type, e.g. "character.update_persona".
    command: str = Field(min_length=1)
    reason: Reason
    rule: str = Field(min_length=1)
    requested_by: UserId | None = None
