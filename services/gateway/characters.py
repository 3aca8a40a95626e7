"""Characters read straight from their streams (no projection lag), and the answers to character commands."""

from __future__ import annotations

import re
import uuid

from contracts import REGISTRY, CharacterPersonaUpdated, CharacterReferenceSet, ContractError, Envelope, ImageRef
from contracts.streams import character_stream, user_reference_stream
from services.gateway.auth import User
from services.gateway.errors import (
    Conflict,
    GatewayError,
    NotFound,
    Unprocessable,
)
from services.gateway.readmodels.characters import CharacterView, fold_character
from services.runtime.eventstore import EventStore

__all__ = ["load_character", "new_character_id", "raise_if_refused", "visible_character"]

_CHARACTER_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SLUG = re.compile(r"[^a-z0-9]+")
_REFUSALS: dict[str, type[GatewayError]] = {
    "character.exists": Conflict,
    "character.unknown": NotFound,
    "character.not_owner": NotFound,
}


def new_character_id(name: str) -> str:
    """A readable, unique id: the name's slug and 8 random hex digits."""
    slug = _SLUG.sub("-", name.lower()).strip("-")[:40].strip("-") or "character"
    return f"{slug}-{uuid.uuid4().hex[:8]}"


async def load_character(store: EventStore, character_id: str, user_id: str | None = None) -> CharacterView:
    """The character from its stream; a built-in one with `user_id`'s own reference (none without a user)."""
    if not _CHARACTER_ID.match(character_id):
        return CharacterView(character_id)
    events = []
    for recorded in await store.read_stream(character_stream(character_id)):
        try:
            events.append((recorded.envelope.seq or 0, recorded.envelope.open(REGISTRY), recorded.recorded_at))
        except ContractError:
            continue
    view = fold_character(character_id, events)
    if view.builtin and user_id is not None:
        view = view.for_user(*await _users_own(store, character_id, user_id))
    return view


async def _users_own(store: EventStore, character_id: str,
                     user_id: str) -> tuple[ImageRef | None, CharacterPersonaUpdated | None]:
    """A user's own reference photo and persona of a built-in character, from their reference stream."""
    reference, persona = None, None
    for _seq, message in await store.replay(user_reference_stream(character_id, user_id), REGISTRY):
        if isinstance(message, CharacterReferenceSet):
            reference = message.image
        elif isinstance(message, CharacterPersonaUpdated):
            persona = message
    return reference, persona


async def visible_character(store: EventStore, character_id: str, user: User) -> CharacterView:
    """The character if the user may see it (a built-in one, or their own, or for a nick its key's), as that
    user sees it (a built-in one with a nick's own reference); else NotFound."""
    view = await load_character(store, character_id, user.id)
    # The characters a bot's key made serve every person it speaks for.
    if not (view.visible_to(user.id) or (user.nick is not None and view.visible_to(user.account))):
        raise NotFound(f"no character {character_id!r} (GET /characters lists yours and the built-in ones)",
                       code="character_not_found")
    return view


def raise_if_refused(answer: Envelope) -> None:
    """Turn a CharacterRefused answer into the HTTP error that says why."""
    if answer.type != "character.refused":
        return
    try:
        refused = answer.open(REGISTRY)
        rule, reason = refused.rule, refused.reason
    except ContractError:
        rule, reason = answer.data.get("rule", "refused"), str(answer.data.get("reason", "refused"))
    error = _REFUSALS.get(rule, Unprocessable)
    raise error(f"the chat service refused: {reason}", code=rule.replace("character.", "character_"))
