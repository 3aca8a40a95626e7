"""Conversation rules: messages taken in, refusals, pictures requested or not, replies recorded once."""

from __future__ import annotations

import uuid

from contracts import (
    CharacterReplied,
    ChatMessageRefused,
    ConversationStarted,
    ImageRequestedInChat,
    RequestChain,
    UserMessageSent,
)
from services.chat.domain.characters import CharacterState
from services.chat.domain.conversations import (
    NOT_YOUR_CONVERSATION,
    OTHER_CHARACTER,
    UNKNOWN_CHARACTER,
    WINDOW,
    ConversationState,
    RecordReply,
    decide,
    evolve,
)
from tests.unit.chat.helpers import CONVERSATION, REFERENCE, Talk, custom, luna, message_id


def kinds(events) -> list[str]:
    return [e.type.removeprefix("chat.") for e in events]


def test_first_message_starts_the_conversation_then_messages_are_recorded() -> None:
    talk = Talk()
    assert kinds(talk.receive("hi Luna", 1)) == ["conversation_started", "user_message_sent"]
    assert talk.state.started and talk.state.user_id == "u1" and talk.state.character_id == "luna"
    assert kinds(talk.receive("how are you?", 2)) == ["user_message_sent"]
    assert talk.commands == []


def test_a_message_is_taken_in_and_answered_once() -> None:
    talk = Talk()
    talk.receive("hi", 1)
    assert talk.receive("hi", 1) == []
    (replied,) = talk.reply(1, "Oh, hi...")
    assert isinstance(replied, CharacterReplied)
    assert replied.in_reply_to == message_id(1) and replied.message_id == uuid.uuid5(message_id(1), "reply")
    assert (replied.user_id, replied.character_id, replied.offline) == ("u1", "luna", True)
    assert replied.chain_id is None and not replied.needs_reference
    assert talk.reply(1, "again") == []
    assert talk.state.exchange(message_id(1)).reply == "Oh, hi..."


def test_a_reply_to_an_unknown_message_decides_nothing() -> None:
    talk = Talk()
    talk.receive("hi", 1)
    assert talk.reply(7) == []


def test_a_picture_request_with_a_reference_asks_for_a_chain_in_the_same_decision() -> None:
    talk = Talk()
    events = talk.receive("send me a picture of you at the beach", 1)
    assert kinds(events) == ["conversation_started", "user_message_sent", "image_requested"]
    chain = uuid.uuid5(message_id(1), "chain")
    assert events[-1] == ImageRequestedInChat(conversation_id=CONVERSATION, message_id=message_id(1), chain_id=chain,
                                              request_text="at the beach")
    (command,) = talk.commands
    assert command == RequestChain(chain_id=chain, character_id="luna", user_id="u1", request_text="at the beach",
                                   reference_image=REFERENCE)
    (replied,) = talk.reply(1, "On its way!")
    assert replied.chain_id == chain and not replied.needs_reference
    assert talk.commands == [command]


def test_a_picture_request_without_a_reference_requests_nothing_and_the_reply_says_why() -> None:
    talk = Talk()
    no_photo = luna(reference=None)
    events = talk.receive("send me a selfie", 1, no_photo)
    assert kinds(events) == ["conversation_started", "user_message_sent"] and talk.commands == []
    (replied,) = talk.reply(1, "Add a photo first", no_photo, picture_scene="smiling")
    assert replied.needs_reference and replied.chain_id is None and talk.commands == []


def test_a_picture_request_past_the_senders_limit_requests_nothing_and_the_reply_says_log_in() -> None:
    talk = Talk()
    events = talk.receive("send me a picture of you at the beach", 1, pictures_allowed=False)
    assert kinds(events) == ["conversation_started", "user_message_sent"] and talk.commands == []
    (replied,) = talk.reply(1, "Log in for more", picture_scene="at the beach", pictures_allowed=False)
    assert replied.login_required and not replied.needs_reference and replied.chain_id is None
    assert talk.commands == []
    # The LLM's own picture request is held to the same limit.
    talk.receive("I wonder how you'd look on a mountain", 2, pictures_allowed=False)
    (replied,) = talk.reply(2, "Log in first", picture_scene="on a mountain top", pictures_allowed=False)
    assert replied.login_required and talk.commands == []


def test_a_picture_the_llm_asked_for_is_requested_with_the_reply() -> None:
    talk = Talk()
    talk.receive("I wonder how you'd look on a mountain", 1)
    events = talk.reply(1, "Coming up!", picture_scene="on a mountain top")
    assert kinds(events) == ["image_requested", "character_replied"]
    (command,) = talk.commands
    assert command.request_text == "on a mountain top" and events[-1].chain_id == command.chain_id


def test_refusals() -> None:
    talk = Talk()
    talk.receive("hi", 1)
    (theirs,) = talk.receive("hi", 2, user="u2")
    assert isinstance(theirs, ChatMessageRefused) and theirs.rule == NOT_YOUR_CONVERSATION and theirs.user_id == "u2"
    (other,) = talk.receive("hi", 3, custom(), character_id="my-ada")
    assert other.rule == OTHER_CHARACTER
    # Refused messages are remembered: a redelivery decides nothing, and they are never answered.
    assert talk.receive("hi", 2, user="u2") == [] and talk.reply(2) == []
    fresh = Talk()
    (unknown,) = fresh.receive("hi", 1, CharacterState(), character_id="ghost")
    assert unknown.rule == UNKNOWN_CHARACTER and not fresh.state.started


def test_the_window_keeps_the_latest_exchanges() -> None:
    state = ConversationState()
    state = evolve(state, ConversationStarted(conversation_id=CONVERSATION, character_id="luna", user_id="u1"))
    for n in range(WINDOW + 5):
        state = evolve(state, UserMessageSent(conversation_id=CONVERSATION, message_id=message_id(n), text=f"m{n}"))
    assert len(state.exchanges) == WINDOW and state.exchanges[0].text == "m5"
    assert state.version == WINDOW + 6


def test_a_reply_needs_a_started_conversation() -> None:
    reply = RecordReply(message_id=message_id(1), reply_id=message_id(2), text="x", model="m", offline=True,
                        character=luna(), chain_id=message_id(3))
    assert decide(ConversationState(), reply).events == []
