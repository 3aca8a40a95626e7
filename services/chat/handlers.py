"""The chat service's handlers: parse, call the application layer, done. Rules live in `domain`."""

from __future__ import annotations

from contracts import REGISTRY, CreateCharacter, Envelope, SendChatMessage, SetCharacterReference, UpdatePersona
from services.chat.application import Characters, Conversations
from services.runtime.delivery import HandlerTable

__all__ = ["character_handlers", "chat_handlers"]


def character_handlers(characters: Characters) -> HandlerTable:
    table = HandlerTable(REGISTRY, ignore_others=False)

    async def on_command(command: CreateCharacter | SetCharacterReference | UpdatePersona, envelope: Envelope) -> None:
        await characters.handle(command, envelope)

    for model in (CreateCharacter, SetCharacterReference, UpdatePersona):
        table.on(model)(on_command)
    return table


def chat_handlers(conversations: Conversations) -> HandlerTable:
    table = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(SendChatMessage)
    async def on_message(command: SendChatMessage, envelope: Envelope) -> None:
        await conversations.send(command, envelope)

    return table
