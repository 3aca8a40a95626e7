"""Character rules: creation, references, persona edits, ownership refusals and built-in seeding."""

from __future__ import annotations

from contracts import (
    CharacterCreated,
    CharacterPersonaUpdated,
    CharacterReferenceSet,
    CharacterRefused,
    CreateCharacter,
    SetCharacterReference,
    UpdatePersona,
)
from services.chat.domain.characters import (
    EXISTS,
    NOT_OWNER,
    UNKNOWN,
    CharacterState,
    SeedBuiltin,
    UserReference,
    decide,
    evolve,
    evolve_user_reference,
    stream_of,
)
from contracts.streams import user_reference_stream
from services.chat.personas import load_personas
from tests.unit.chat.helpers import REFERENCE, custom, luna

LUNA = load_personas().get("luna").created()


def create(owner: str = "u1", **kw) -> CreateCharacter:
    return CreateCharacter(character_id="my-ada", name="Ada", gender="woman", personality="curious",
                           occupation="engineer", persona="You are Ada.", art_style="photoreal", owner=owner, **kw)


def fold(*events) -> CharacterState:
    state = CharacterState()
    for event in events:
        state = evolve(state, event)
    return state


def test_create_records_the_character_and_its_reference() -> None:
    events = decide(CharacterState(), create(reference_image=REFERENCE))
    assert [type(e) for e in events] == [CharacterCreated, CharacterReferenceSet]
    created = events[0]
    assert created.owner == "u1" and not created.builtin and created.persona == "You are Ada."
    state = fold(*events)
    assert state.exists and state.owner == "u1" and state.reference == REFERENCE and state.version == 2
    assert decide(CharacterState(), create()) == [created]


def test_creating_a_taken_id_is_refused_whoever_asks() -> None:
    state = fold(*decide(CharacterState(), create()))
    (mine,) = decide(state, create())
    assert isinstance(mine, CharacterRefused) and mine.rule == EXISTS and "(yours)" in mine.reason
    (theirs,) = decide(state, create(owner="u2"))
    assert theirs.rule == EXISTS and "(taken)" in theirs.reason and theirs.requested_by == "u2"
    assert theirs.command == "character.create"


def test_only_the_owner_changes_a_custom_character() -> None:
    state = custom(owner="u1")
    (reference,) = decide(state, SetCharacterReference(character_id="my-ada", image=REFERENCE, requested_by="u1"))
    assert reference == CharacterReferenceSet(character_id="my-ada", image=REFERENCE)
    (refused,) = decide(state, SetCharacterReference(character_id="my-ada", image=REFERENCE, requested_by="u2"))
    assert refused.rule == NOT_OWNER and refused.command == "character.set_reference"
    edit = UpdatePersona(character_id="my-ada", persona="You are Ada, now a pilot.", occupation="pilot",
                         requested_by="u1")
    (updated,) = decide(state, edit)
    assert updated == CharacterPersonaUpdated(character_id="my-ada", persona="You are Ada, now a pilot.",
                                              occupation="pilot")
    after = evolve(state, updated)
    assert after.profile.occupation == "pilot" and after.profile.personality == "curious"
    (refused,) = decide(state, edit.model_copy(update={"requested_by": "u2"}))
    assert refused.rule == NOT_OWNER


def test_builtins_take_anyones_reference_and_persona_for_that_user_alone() -> None:
    state = luna(reference=None)
    command = SetCharacterReference(character_id="luna", image=REFERENCE, requested_by="u9")
    (reference,) = decide(state, command)
    assert reference == CharacterReferenceSet(character_id="luna", image=REFERENCE, for_user="u9")
    assert stream_of(state, command) == user_reference_stream("luna", "u9")
    mine = evolve_user_reference(UserReference(), reference)
    assert mine == UserReference(version=1, image=REFERENCE)
    assert state.for_user(mine).reference == REFERENCE
    # Another user's Luna has no face until they give her one.
    assert state.for_user(UserReference()).reference is None
    adjust = UpdatePersona(character_id="luna", persona="Luna is bolder with me.", occupation="surfer",
                           requested_by="u9")
    (persona,) = decide(state, adjust)
    assert persona.for_user == "u9" and stream_of(state, adjust) == user_reference_stream("luna", "u9")
    mine = evolve_user_reference(mine, persona)
    seen = state.for_user(mine)
    assert (seen.profile.persona, seen.profile.occupation, seen.profile.personality) == (
        "Luna is bolder with me.", "surfer", "shy")
    assert seen.reference == REFERENCE
    # The shared Luna is unchanged, and a user persona recorded on her stream would not leak into it.
    assert state.for_user(UserReference()).profile.persona == state.profile.persona
    assert evolve(state, persona).profile.persona == state.profile.persona


def test_a_shared_reference_of_a_builtin_from_an_older_log_serves_nobody() -> None:
    legacy = evolve(luna(reference=None), CharacterReferenceSet(character_id="luna", image=REFERENCE))
    assert legacy.for_user(UserReference()).reference is None
    other = REFERENCE.model_copy(update={"sha256": "cd" * 32})
    assert legacy.for_user(UserReference(1, other)).reference == other


def test_a_custom_characters_reference_is_the_characters_own_for_its_owner() -> None:
    state = custom(owner="u1")
    command = SetCharacterReference(character_id="my-ada", image=REFERENCE, requested_by="u1")
    assert stream_of(state, command) == "character-my-ada"
    after = evolve(state, decide(state, command)[0])
    assert after.for_user(UserReference()).reference == REFERENCE


def test_reference_streams_are_per_user_subject_safe_and_never_a_character_stream() -> None:
    odd_user = "someone.with dots*and>spaces@example.com"
    stream = user_reference_stream("luna", odd_user)
    assert stream.startswith("reference-luna-") and not any(c in stream for c in ". *>")
    assert stream != user_reference_stream("luna", "u2") and stream == user_reference_stream("luna", odd_user)
    assert not stream.startswith("character-")


def test_commands_on_unknown_characters_are_refused() -> None:
    (refused,) = decide(CharacterState(), UpdatePersona(character_id="ghost", persona="x", requested_by="u1"))
    assert refused.rule == UNKNOWN and refused.character_id == "ghost"
    # A refusal does not make the character exist.
    assert not evolve(CharacterState(), refused).exists


def test_seeding_records_a_builtin_once_and_follows_persona_edits() -> None:
    (created,) = decide(CharacterState(), SeedBuiltin(LUNA))
    assert created == LUNA and created.builtin
    state = evolve(CharacterState(), created)
    assert decide(state, SeedBuiltin(LUNA)) == []
    edited = LUNA.model_copy(update={"persona": LUNA.persona + " She also paints."})
    (update,) = decide(state, SeedBuiltin(edited))
    assert isinstance(update, CharacterPersonaUpdated) and update.persona.endswith("She also paints.")
    assert decide(evolve(state, update), SeedBuiltin(edited)) == []


def test_seeding_leaves_a_custom_character_with_the_same_id_alone() -> None:
    taken = evolve(CharacterState(), CharacterCreated(**{**LUNA.model_dump(exclude={"type", "version"}),
                                                         "builtin": False, "owner": "u1"}))
    assert decide(taken, SeedBuiltin(LUNA)) == []
