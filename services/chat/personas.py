"""The built-in personas and the shared offline templates, loaded from a data file and checked at load.

The file is `services/chat/data/personas.json` unless settings name another. Every problem found
(duplicate ids, an unknown art style, a template naming a field it cannot have) stops start-up
with a `PersonaDataError` that says where, so a bad edit never reaches a conversation.
"""

from __future__ import annotations

import json
import string
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts import CharacterCreated
from contracts.fields import CharacterId
from services.chat.errors import PersonaDataError

__all__ = ["DATA_DIR", "Persona", "PersonaBook", "SharedTemplates", "load_personas"]

DATA_DIR = Path(__file__).resolve().parent / "data"
_CHAT_FIELDS = frozenset({"name", "occupation"})
_PICTURE_FIELDS = _CHAT_FIELDS | {"scene"}

_Lines = tuple[str, ...]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Persona(_Frozen):
    """One built-in character: who they are, how they greet, and what they say offline."""

    id: CharacterId
    name: str = Field(min_length=1, max_length=100)
    gender: Literal["woman", "man", "other"]
    personality: str = Field(min_length=1, max_length=200)
    occupation: str = Field(min_length=1, max_length=200)
    persona: str = Field(min_length=20, max_length=4000)
    art_style: str = Field(min_length=1)
    greeting: str = Field(min_length=1)
    replies: _Lines = Field(min_length=2)

    def created(self) -> CharacterCreated:
        """The event that records this built-in character in the log."""
        return CharacterCreated(character_id=self.id, name=self.name, gender=self.gender,
                                personality=self.personality, occupation=self.occupation, persona=self.persona,
                                art_style=self.art_style, owner=None, builtin=True)


class SharedTemplates(_Frozen):
    """Offline lines for every character: custom characters' chat, and the picture answers."""

    greeting: str = Field(min_length=1)
    chat: _Lines = Field(min_length=2)
    picture: _Lines = Field(min_length=1)
    needs_reference: _Lines = Field(min_length=1)
    login_required: _Lines = Field(min_length=1)
    offline_note: str = Field(min_length=1)


class PersonaBook(_Frozen):
    """The whole file: shared templates and the built-in personas, in file order."""

    shared: SharedTemplates
    personas: tuple[Persona, ...] = Field(min_length=1)

    def get(self, character_id: str) -> Persona | None:
        return next((p for p in self.personas if p.id == character_id), None)


def load_personas(path: Path | None = None, *, styles: Collection[str] | None = None) -> PersonaBook:
    """Read and check the personas file; `styles`, when given, are the art styles a persona may name."""
    path = path or DATA_DIR / "personas.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PersonaDataError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PersonaDataError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        book = PersonaBook.model_validate(raw)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise PersonaDataError(f"{path}: {where}") from None
    problems = list(_problems(book, styles))
    if problems:
        raise PersonaDataError(f"{path}: " + "; ".join(problems))
    return book


def _problems(book: PersonaBook, styles: Collection[str] | None) -> Iterable[str]:
    for what, values in (("id", [p.id for p in book.personas]), ("name", [p.name for p in book.personas])):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            yield f"duplicate persona {what}s: {', '.join(duplicates)}"
    for persona in book.personas:
        if styles is not None and persona.art_style not in styles:
            yield f"persona {persona.id}: unknown art_style {persona.art_style!r} (known: {', '.join(sorted(styles))})"
        for index, line in enumerate((persona.greeting, *persona.replies)):
            yield from _bad_fields(f"persona {persona.id} line {index}", line, _CHAT_FIELDS)
    shared = book.shared
    for kind, lines, allowed in (("greeting", (shared.greeting,), _CHAT_FIELDS), ("chat", shared.chat, _CHAT_FIELDS),
                                 ("picture", shared.picture, _PICTURE_FIELDS),
                                 ("needs_reference", shared.needs_reference, _CHAT_FIELDS),
                                 ("login_required", shared.login_required, _CHAT_FIELDS),
                                 ("offline_note", (shared.offline_note,), frozenset())):
        for index, line in enumerate(lines):
            yield from _bad_fields(f"shared {kind} line {index}", line, allowed)


def _bad_fields(where: str, template: str, allowed: frozenset[str]) -> Iterable[str]:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        yield f"{where}: not a template ({exc})"
        return
    unknown = sorted(names - allowed)
    if unknown:
        yield f"{where}: unknown field(s) {', '.join('{' + n + '}' for n in unknown)} (allowed: {sorted(allowed)})"
