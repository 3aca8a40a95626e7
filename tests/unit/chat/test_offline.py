"""Offline persona replies: in character, deterministic per message, and honest about being offline."""

from __future__ import annotations

import uuid

from contracts import CharacterCreated
from services.chat.domain.conversations import PicturePlan
from services.chat.offline import offline_reply, words
from services.chat.personas import load_personas

BOOK = load_personas()
LUNA = BOOK.get("luna").created()
ADA = CharacterCreated(character_id="my-ada", name="Ada", gender="woman", occupation="engineer",
                       art_style="photoreal", owner="u1")


def test_same_message_same_reply_and_messages_vary() -> None:
    replies = {offline_reply(BOOK, LUNA, uuid.UUID(int=n), say_offline=False) for n in range(40)}
    assert replies == set(BOOK.get("luna").replies)
    message = uuid.uuid4()
    assert offline_reply(BOOK, LUNA, message) == offline_reply(BOOK, LUNA, message)


def test_first_reply_greets_and_the_first_offline_reply_says_so() -> None:
    text = offline_reply(BOOK, LUNA, uuid.UUID(int=1), first_reply=True)
    assert text == f"{BOOK.get('luna').greeting} {BOOK.shared.offline_note}"
    assert "offline" in text
    assert "offline" not in offline_reply(BOOK, LUNA, uuid.UUID(int=1), say_offline=False)


def test_custom_characters_use_the_shared_lines_with_their_name() -> None:
    assert offline_reply(BOOK, ADA, uuid.UUID(int=1), first_reply=True, say_offline=False) == \
        "Hi, I'm Ada. It's nice to meet you!"
    texts = {offline_reply(BOOK, ADA, uuid.UUID(int=n), say_offline=False) for n in range(40)}
    assert any("engineer" in t for t in texts) and not any("{" in t for t in texts)


def test_picture_replies_say_what_happens() -> None:
    coming = offline_reply(BOOK, LUNA, uuid.UUID(int=3), say_offline=False,
                           picture=PicturePlan("at the beach", "requested", uuid.UUID(int=9)))
    assert "at the beach" in coming
    needs = offline_reply(BOOK, LUNA, uuid.UUID(int=3), say_offline=False,
                          picture=PicturePlan("at the beach", "needs_reference"))
    assert "reference photo" in needs
    login = {offline_reply(BOOK, LUNA, uuid.UUID(int=n), say_offline=False,
                           picture=PicturePlan("at the beach", "login_required")) for n in range(10)}
    assert login and all("log in" in t.lower() for t in login)


def test_words_join_back_exactly() -> None:
    assert words("Hi there,  you!") == ["Hi ", "there, ", " ", "you!"]
    assert "".join(words("Hi there,  you!")) == "Hi there,  you!"
