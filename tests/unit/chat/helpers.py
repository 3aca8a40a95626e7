"""Builders shared by the chat unit tests."""

from __future__ import annotations

import uuid

from contracts import CharacterCreated, ImageRef, SendChatMessage
from services.chat.domain.characters import CharacterState
from services.chat.domain.conversations import ConversationState, ReceiveMessage, RecordReply, decide, evolve

CONVERSATION = uuid.UUID("00000000-0000-4000-8000-00000000c0c0")
REFERENCE = ImageRef(sha256="ab" * 32, media_type="image/png", width=512, height=512, bytes=1000)


def luna(*, reference: ImageRef | None = REFERENCE) -> CharacterState:
    profile = CharacterCreated(character_id="luna", name="Luna", gender="woman", personality="shy",
                               occupation="photographer", persona="You are Luna, a shy photographer.",
                               art_style="photoreal", builtin=True)
    return CharacterState(version=2 if reference else 1, profile=profile, reference=reference)


def custom(owner: str = "u1") -> CharacterState:
    profile = CharacterCreated(character_id="my-ada", name="Ada", gender="woman", personality="curious",
                               occupation="engineer", persona="You are Ada, an engineer who loves puzzles.",
                               art_style="photoreal", owner=owner)
    return CharacterState(version=1, profile=profile)


def message_id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def send(text: str, *, user: str = "u1", character_id: str = "luna", pictures_allowed: bool = True) -> SendChatMessage:
    return SendChatMessage(conversation_id=CONVERSATION, character_id=character_id, user_id=user, text=text,
                           pictures_allowed=pictures_allowed)


class Talk:
    """Drives a conversation's decide/evolve like the application does after each append."""

    def __init__(self) -> None:
        self.state = ConversationState()
        self.commands: list = []

    def apply(self, decision) -> list:
        for event in decision.events:
            self.state = evolve(self.state, event)
        self.commands += decision.commands
        return decision.events

    def receive(self, text: str, n: int, character: CharacterState | None = None, *, pictures=None, **kw) -> list:
        command = send(text, **kw)
        trigger = ReceiveMessage(command, message_id(n), character or luna(), uuid.uuid5(message_id(n), "chain"),
                                 pictures or {})
        return self.apply(decide(self.state, trigger))

    def reply(self, n: int, text: str = "Hi!", character: CharacterState | None = None, **kw) -> list:
        kw = {"model": "offline-persona", "offline": True, **kw}
        trigger = RecordReply(message_id=message_id(n), reply_id=uuid.uuid5(message_id(n), "reply"), text=text,
                              character=character or luna(), chain_id=uuid.uuid5(message_id(n), "chain"), **kw)
        return self.apply(decide(self.state, trigger))
