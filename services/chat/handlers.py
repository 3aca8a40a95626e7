"""The chat service's consumers: subject, durable and typed handlers together; handlers parse, call the
application layer, done. Rules live in `domain`."""

from __future__ import annotations

from contracts import CreateCharacter, Envelope, SendChatMessage, SetCharacterReference, UpdatePersona
from contracts.subjects import COMMANDS_STREAM, PREFIX
from services.chat.application import Characters, Conversations
from services.runtime.consumers import Consumer
from services.runtime.streams import ConsumerSpec

__all__ = ["CHARACTER_CONSUMER", "CHAT_CONSUMER", "character_consumer", "chat_consumer"]

CHARACTER_CONSUMER = "chat-commands-character"
CHAT_CONSUMER = "chat-commands-chat"


def character_consumer(characters: Characters, *, ack_wait_s: float, workers: int) -> Consumer:
    consumer = Consumer(ConsumerSpec(CHARACTER_CONSUMER, COMMANDS_STREAM, f"{PREFIX}.cmd.character.>",
                                     ack_wait_s=ack_wait_s), workers=workers)

    async def on_command(command: CreateCharacter | SetCharacterReference | UpdatePersona, envelope: Envelope) -> None:
        await characters.handle(command, envelope)

    for model in (CreateCharacter, SetCharacterReference, UpdatePersona):
        consumer.on(model)(on_command)
    return consumer


def chat_consumer(conversations: Conversations, *, ack_wait_s: float, workers: int) -> Consumer:
    consumer = Consumer(ConsumerSpec(CHAT_CONSUMER, COMMANDS_STREAM, f"{PREFIX}.cmd.chat.>", ack_wait_s=ack_wait_s),
                        workers=workers)

    @consumer.on(SendChatMessage)
    async def on_message(command: SendChatMessage, envelope: Envelope) -> None:
        await conversations.send(command, envelope)

    return consumer
