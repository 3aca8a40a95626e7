"""What the planner knows of a character, read from its stream in the log (chat writes it)."""

from __future__ import annotations

from contracts import REGISTRY, CharacterCreated, CharacterThresholdSet
from contracts.streams import character_stream
from services.planner.planning import CharacterProfile
from services.runtime.eventstore import EventStore

__all__ = ["character_profile"]


async def character_profile(
    store: EventStore, character_id: str, *, default_style: str
) -> tuple[CharacterProfile, float | None]:
    """The profile and the character's own face threshold; an unknown id (e.g. an ad-hoc photo)
    gets a neutral profile, so a picture can be made of anyone whose photo was given."""
    profile = CharacterProfile(id=character_id, gender="other", art_style=default_style)
    threshold: float | None = None
    for _seq, event in await store.replay(character_stream(character_id), REGISTRY):
        if isinstance(event, CharacterCreated):
            profile = profile.model_copy(update={"gender": event.gender, "art_style": event.art_style})
        elif isinstance(event, CharacterThresholdSet):
            threshold = event.threshold
    return profile, threshold
