"""A character as the gateway shows it, folded from its `character-<id>` stream. Pure.

Who may see it: everyone for a built-in character, only its owner otherwise. A built-in character's
reference photo is each user's own (folded from their `reference-*` stream): `for_user` puts it in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from contracts import (
    CharacterCreated,
    CharacterPersonaUpdated,
    CharacterReferenceSet,
    CharacterThresholdSet,
    ImageRef,
    Message,
)

__all__ = ["CharacterView", "evolve_character", "fold_character"]


@dataclass(frozen=True)
class CharacterView:
    """A row of `characters_view`; `exists` is False until its CharacterCreated is folded."""

    character_id: str
    name: str = ""
    gender: str = "other"
    personality: str = ""
    occupation: str = ""
    persona: str = ""
    art_style: str = ""
    owner: str | None = None
    builtin: bool = False
    reference: ImageRef | None = None
    threshold: float | None = None
    version: int = 0
    exists: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def visible_to(self, user_id: str) -> bool:
        return self.exists and (self.builtin or self.owner == user_id)

    def editable_by(self, user_id: str) -> bool:
        """Its owner edits a character; anyone adjusts a built-in one's persona, for themselves alone."""
        return self.exists and (self.builtin or self.owner == user_id)

    def for_user(self, reference: ImageRef | None, persona: CharacterPersonaUpdated | None = None) -> CharacterView:
        """The character as one user sees it: a built-in one with that user's own reference (or none) and
        their own persona, if they adjusted it."""
        if not self.builtin:
            return self
        view = replace(self, reference=reference)
        return _with_persona(view, persona) if persona is not None else view

    def public(self) -> dict[str, Any]:
        """The JSON a client sees (no persona: that has its own endpoint)."""
        return {
            "id": self.character_id,
            "name": self.name,
            "gender": self.gender,
            "personality": self.personality,
            "occupation": self.occupation,
            "art_style": self.art_style,
            "builtin": self.builtin,
            "has_reference": self.reference is not None,
            # Versioned by the photo: a browser that cached the old avatar asks for the new one.
            "avatar_url": f"/avatar/{self.character_id}"
                          + (f"?v={self.reference.sha256[:12]}" if self.reference is not None else ""),
            "reference": None if self.reference is None else self.reference.model_dump(),
        }


def evolve_character(view: CharacterView, event: Message, version: int, at: datetime) -> CharacterView:
    """The view after the event at stream `version`; older versions change nothing."""
    if version <= view.version:
        return view
    view = replace(view, version=version, updated_at=at)
    match event:
        case CharacterCreated():
            return replace(view, name=event.name, gender=event.gender, personality=event.personality,
                           occupation=event.occupation, persona=event.persona, art_style=event.art_style,
                           owner=event.owner, builtin=event.builtin, exists=True, created_at=view.created_at or at)
        case CharacterReferenceSet() if event.for_user is None and not view.builtin:
            # A built-in's shared reference (older logs) is nobody's: each user gives their own.
            return replace(view, reference=event.image)
        case CharacterPersonaUpdated() if event.for_user is None:
            return _with_persona(view, event)
        case CharacterThresholdSet():
            return replace(view, threshold=event.threshold)
    return view


def _with_persona(view: CharacterView, event: CharacterPersonaUpdated) -> CharacterView:
    return replace(view, persona=event.persona,
                   personality=view.personality if event.personality is None else event.personality,
                   occupation=view.occupation if event.occupation is None else event.occupation)


def fold_character(character_id: str, events: list[tuple[int, Message, datetime]]) -> CharacterView:
    view = CharacterView(character_id)
    for version, event, at in events:
        view = evolve_character(view, event, version, at)
    return view
