"""A character's state folded from its stream, and the rules for character commands. Pure: no I/O.

Every command is answered with an event: the change, or `CharacterRefused` with the rule. A command
redelivered after it was answered decides the same event-0 id again (ids are derived from the
command), so the store recognises the batch as already there and nothing is appended twice.

A built-in character is everyone's, but its face is each user's own: a reference photo given to a
built-in is recorded `for_user` on that user's reference stream (`reference_stream_of`) and folded
into `UserReference`; `CharacterState.for_user` is the character as that user sees it. A shared
reference of a built-in (written by older versions) is never used for anybody.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from contracts import (
    CharacterCreated,
    CharacterPersonaUpdated,
    CharacterReferenceSet,
    CharacterRefused,
    CreateCharacter,
    Event,
    ImageRef,
    Message,
    SetCharacterReference,
    UpdatePersona,
)
from contracts.streams import character_stream, reference_stream

__all__ = [
    "EXISTS",
    "NOT_OWNER",
    "UNKNOWN",
    "CharacterState",
    "SeedBuiltin",
    "Trigger",
    "UserReference",
    "decide",
    "evolve",
    "evolve_user_reference",
    "stream_of",
]

EXISTS = "character.exists"
UNKNOWN = "character.unknown"
NOT_OWNER = "character.not_owner"


@dataclass(frozen=True)
class SeedBuiltin:
    """Make sure a built-in character is in the log as the personas file describes it."""

    created: CharacterCreated


Trigger = CreateCharacter | SetCharacterReference | UpdatePersona | SeedBuiltin


@dataclass(frozen=True)
class CharacterState:
    """Who the character is now (`profile`, persona edits applied) and its latest reference image."""

    version: int = 0
    profile: CharacterCreated | None = None
    reference: ImageRef | None = None

    @property
    def exists(self) -> bool:
        return self.profile is not None

    @property
    def builtin(self) -> bool:
        return self.profile is not None and self.profile.builtin

    @property
    def owner(self) -> str | None:
        return self.profile.owner if self.profile is not None else None

    def for_user(self, mine: UserReference) -> CharacterState:
        """The character as one user sees it: a built-in one with that user's own reference (or none) and
        their own persona adjustments, if any."""
        if not self.builtin:
            return self
        state = replace(self, reference=mine.image)
        return _with_persona(state, mine.persona) if mine.persona is not None else state


@dataclass(frozen=True)
class UserReference:
    """One user's own take on a built-in character, folded from their reference stream: their reference
    photo and their persona adjustments."""

    version: int = 0
    image: ImageRef | None = None
    persona: CharacterPersonaUpdated | None = None


def evolve_user_reference(state: UserReference, event: Message, version: int | None = None) -> UserReference:
    version = version if version is not None else state.version + 1
    if isinstance(event, CharacterReferenceSet):
        return replace(state, version=version, image=event.image)
    if isinstance(event, CharacterPersonaUpdated):
        return replace(state, version=version, persona=event)
    return replace(state, version=version)


def stream_of(state: CharacterState, command: Trigger) -> str:
    """Where the answer to `command` is recorded: a user's reference or persona of a built-in in their own
    stream."""
    if isinstance(command, SetCharacterReference | UpdatePersona):
        return reference_stream(command.character_id, command.requested_by, builtin=state.builtin)
    return character_stream(command.character_id)


def evolve(state: CharacterState, event: Message, version: int | None = None) -> CharacterState:
    """The state after `event`; other events (thresholds, refusals) change only the version."""
    state = replace(state, version=version if version is not None else state.version + 1)
    match event:
        case CharacterCreated() if state.profile is None:
            return replace(state, profile=event)
        case CharacterReferenceSet() if event.for_user is None:
            return replace(state, reference=event.image)
        case CharacterPersonaUpdated() if state.profile is not None and event.for_user is None:
            return _with_persona(state, event)
    return state


def _with_persona(state: CharacterState, event: CharacterPersonaUpdated) -> CharacterState:
    if state.profile is None:
        return state
    changes = {"persona": event.persona, "personality": event.personality, "occupation": event.occupation}
    return replace(state, profile=state.profile.model_copy(update={k: v for k, v in changes.items() if v is not None}))


def decide(state: CharacterState, trigger: Trigger) -> list[Event]:
    match trigger:
        case SeedBuiltin():
            return _seed(state, trigger.created)
        case CreateCharacter():
            return _create(state, trigger)
        case SetCharacterReference():
            refusal = _refuse_unless_allowed(state, trigger, trigger.requested_by)
            for_user = trigger.requested_by if state.builtin else None
            return refusal or [CharacterReferenceSet(character_id=trigger.character_id, image=trigger.image,
                                                     for_user=for_user)]
        case UpdatePersona():
            # A built-in's persona is adjusted per user: recorded for them, the shared one follows its file.
            refusal = _refuse_unless_allowed(state, trigger, trigger.requested_by)
            return refusal or [CharacterPersonaUpdated(character_id=trigger.character_id, persona=trigger.persona,
                                                       personality=trigger.personality,
                                                       occupation=trigger.occupation,
                                                       for_user=trigger.requested_by if state.builtin else None)]
    raise TypeError(f"not a character trigger: {trigger!r}")


def _seed(state: CharacterState, created: CharacterCreated) -> list[Event]:
    if state.profile is None:
        return [created]
    current = state.profile
    # Only the persona of a built-in follows the file; a custom character that took the id stays as it is.
    if not current.builtin:
        return []
    wanted = (created.persona, created.personality, created.occupation)
    if (current.persona, current.personality, current.occupation) == wanted:
        return []
    return [CharacterPersonaUpdated(character_id=created.character_id, persona=created.persona,
                                    personality=created.personality, occupation=created.occupation)]


def _create(state: CharacterState, command: CreateCharacter) -> list[Event]:
    if state.profile is not None:
        whose = "yours" if state.owner == command.owner else "taken"
        return [_refused(command, command.owner, EXISTS,
                         f"a character with id {command.character_id!r} already exists ({whose}); pick another id")]
    fields = command.model_dump(exclude={"type", "version", "reference_image"})
    events: list[Event] = [CharacterCreated(**fields, builtin=False)]
    if command.reference_image is not None:
        events.append(CharacterReferenceSet(character_id=command.character_id, image=command.reference_image))
    return events


def _refuse_unless_allowed(
    state: CharacterState, command: SetCharacterReference | UpdatePersona, user: str
) -> list[Event] | None:
    """Anyone may give a built-in character their own photo and persona; only its owner may change another."""
    if state.profile is None:
        return [_refused(command, user, UNKNOWN, f"there is no character {command.character_id!r}")]
    if state.builtin:
        return None
    if state.owner != user:
        return [_refused(command, user, NOT_OWNER,
                         f"{state.profile.name} belongs to another user; only its owner can change it")]
    return None


def _refused(command: Trigger, user: str, rule: str, reason: str) -> CharacterRefused:
    return CharacterRefused(character_id=command.character_id, command=command.type, reason=reason, rule=rule,
                            requested_by=user)
