"""Offline persona mode: a reply in character from templates, when no LLM is configured or it failed. Pure.

The line is chosen by the message id, so the same message always gets the same reply (a redelivered
message streams and records the very same words). The first offline reply of a conversation says
that the character is offline; every offline reply is recorded with `offline=True`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from uuid import UUID

from contracts import CharacterCreated
from services.chat.domain.conversations import PicturePlan
from services.chat.intent import spoken_scene
from services.chat.personas import PersonaBook

__all__ = ["OFFLINE_MODEL", "offline_reply", "words"]

OFFLINE_MODEL = "offline-persona"


def offline_reply(
    book: PersonaBook,
    character: CharacterCreated,
    message_id: UUID,
    *,
    picture: PicturePlan | None = None,
    first_reply: bool = False,
    say_offline: bool = True,
) -> str:
    """What `character` says to message `message_id` without an LLM."""
    shared = book.shared
    persona = book.get(character.character_id) if character.builtin else None
    fields = {"name": character.name, "occupation": character.occupation or "what I do", "scene": ""}
    if picture is not None:
        fields["scene"] = spoken_scene(picture.scene)
        lines = {"requested": shared.picture, "needs_reference": shared.needs_reference,
                 "login_required": shared.login_required}[picture.status]
    elif first_reply:
        lines = (persona.greeting if persona else shared.greeting,)
    else:
        lines = persona.replies if persona else shared.chat
    text = _pick(lines, message_id).format(**fields)
    return f"{text} {shared.offline_note}" if say_offline else text


def words(text: str) -> list[str]:
    """The text cut into word-sized deltas that join back to exactly the text."""
    parts = text.split(" ")
    return [part + " " for part in parts[:-1]] + [parts[-1]]


def _pick(lines: Sequence[str], message_id: UUID) -> str:
    digest = hashlib.sha256(message_id.bytes).digest()
    return lines[int.from_bytes(digest[:8], "big") % len(lines)]
