"""The chat service's application layer: load, decide, append, for characters and conversations.

Ids are derived, never drawn: the events a command causes derive from its event id, a message id
(when the sender gave none) from the command's, a reply and a picture chain from the message id.
So a redelivered command, a resent message or a second replica racing the first record nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from uuid import UUID

from contracts import Command, Envelope, Event, SendChatMessage
from contracts.decision import Decision
from contracts.streams import chain_stream, character_stream, conversation_stream, user_reference_stream
from services.chat.domain import characters as character_rules
from services.chat.domain import conversations as conversation_rules
from services.chat.domain.characters import CharacterState, SeedBuiltin, UserReference
from services.chat.domain.conversations import ConversationState, ReceiveMessage
from services.chat.personas import Persona
from services.chat.pictures import accepted_pictures
from services.chat.replies import Replier
from services.runtime.eventstore import EventStore
from services.runtime.ids import derived_id
from services.runtime.writer import Stamp, StreamWriter

__all__ = ["Characters", "Conversations", "message_id_of"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def message_id_of(command: SendChatMessage, envelope: Envelope) -> UUID:
    """The message's id: the sender's, or one derived from the command so a redelivery keeps it."""
    return command.message_id or derived_id(envelope.event_id, "message")


class Characters:
    """`character-*` and users' `reference-*` streams: built-ins recorded at start-up, commands answered."""

    def __init__(self, store: EventStore, clock: Clock) -> None:
        self._writer = StreamWriter(store, CharacterState(), character_rules.evolve)
        self._references = StreamWriter(store, UserReference(), character_rules.evolve_user_reference)
        self._clock = clock

    async def load(self, character_id: str) -> CharacterState:
        return await self._writer.load(character_stream(character_id))

    async def load_for(self, character_id: str, user_id: str) -> CharacterState:
        """The character as `user_id` sees it: a built-in one with the user's own reference photo."""
        state = await self.load(character_id)
        if not state.builtin:
            return state
        return state.for_user(await self._references.load(user_reference_stream(character_id, user_id)))

    async def handle(self, command: character_rules.Trigger, envelope: Envelope) -> list[Event]:
        """Answer a character command; returns the events appended (none when it was answered before)."""
        stamp = Stamp.caused_by(envelope, "character", self._clock())
        character = await self.load(command.character_id)
        stream = character_rules.stream_of(character, command)
        if stream == character_stream(command.character_id):
            written = await self._writer.write(
                stream, lambda state: _as_decision(character_rules.decide(state, command)), stamp)
        else:
            # The user's own stream holds only their reference; the decision is made on the character.
            written = await self._references.write(
                stream, lambda _mine: _as_decision(character_rules.decide(character, command)), stamp)
        return written.decision.events if written.new else []

    async def seed(self, personas: Iterable[Persona]) -> int:
        """Record each built-in character unless the log already has it as described; returns how many changed."""
        changed = 0
        for persona in personas:
            seed = SeedBuiltin(persona.created())
            stream = character_stream(persona.id)
            written = await self._writer.write(
                stream, lambda state, seed=seed: _as_decision(character_rules.decide(state, seed)),
                _seed_stamp(seed, stream, self._clock()))
            changed += written.new
        return changed


class Conversations:
    """`conversation-*` streams: a message is taken in, then answered by the replier."""

    def __init__(self, store: EventStore, characters: Characters, replier: Replier, clock: Clock) -> None:
        self._store = store
        self._writer = StreamWriter(store, ConversationState(), conversation_rules.evolve)
        self._characters = characters
        self._replier = replier
        self._clock = clock

    async def load(self, conversation_id: UUID) -> ConversationState:
        return await self._writer.load(conversation_stream(conversation_id))

    async def send(self, command: SendChatMessage, envelope: Envelope) -> None:
        """Record the message (and any picture it asks for), then stream and record the reply."""
        stream = conversation_stream(command.conversation_id)
        message_id = message_id_of(command, envelope)
        chain_id = derived_id(message_id, "chain")
        character = await self._characters.load_for(command.character_id, command.user_id)
        # A follow-up picture edits the conversation's last accepted one: which chains completed is read first.
        pictures = await accepted_pictures(self._store, await self.load(command.conversation_id))
        receive = ReceiveMessage(command, message_id, character, chain_id, pictures)
        state = (await self._writer.write(
            stream, lambda s: conversation_rules.decide(s, receive),
            Stamp.caused_by(envelope, "message", self._clock(), correlation_id=stream), route=_chain_route)).state
        exchange = state.exchange(message_id)
        if exchange is None or exchange.refused or exchange.reply is not None:
            return
        reply = await self._replier.reply(state, character, exchange, reply_id=derived_id(message_id, "reply"),
                                          chain_id=chain_id, pictures_allowed=command.pictures_allowed,
                                          pictures=pictures)
        await self._writer.write(
            stream, lambda s: conversation_rules.decide(s, reply),
            Stamp.caused_by(envelope, "reply", self._clock(), correlation_id=stream), route=_chain_route)


def _seed_stamp(seed: SeedBuiltin, stream: str, now: datetime) -> Stamp:
    """Seeds have no causing message: ids derive from the content and the version decided on, so
    the same file recorded twice is one event, and a persona edited back and forth is each edit."""
    digest = hashlib.sha256(seed.created.model_dump_json().encode()).hexdigest()[:16]
    return Stamp(lambda version, what: derived_id(f"builtin:{seed.created.character_id}", f"{version}:{digest}:{what}"),
                 now, correlation_id=stream, actor="chat")


def _chain_route(command: Command) -> tuple[str, str]:
    """A chain request travels as the chain's own: stream and correlation `chain-<id>`."""
    stream = chain_stream(command.chain_id)
    return stream, stream


def _as_decision(events: list[Event]) -> Decision:
    return Decision(events)
