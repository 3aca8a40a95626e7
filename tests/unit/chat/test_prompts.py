"""What the LLM is sent: persona as the system prompt, the conversation bounded, the picture note."""

from __future__ import annotations

from services.chat.domain.conversations import PicturePlan
from services.chat.prompts import llm_messages, system_prompt
from tests.unit.chat.helpers import Talk, luna, message_id

LUNA = luna().profile


def conversation(turns: int) -> Talk:
    talk = Talk()
    for n in range(1, turns + 1):
        talk.receive(f"message {n}", n)
        talk.reply(n, f"reply {n}")
    return talk


def test_system_prompt_holds_the_persona_and_the_rules() -> None:
    prompt = system_prompt(LUNA)
    assert prompt.startswith("You are Luna, a photographer.\n\nYour personality: shy.")
    assert "You are Luna, a shy photographer." in prompt and "Stay in character" in prompt
    assert "picture" not in system_prompt(LUNA).split("pictures are made by the app")[1]


def test_picture_notes() -> None:
    coming = system_prompt(LUNA, PicturePlan("at the beach", "requested", message_id(9)))
    assert "(at the beach)" in coming and "on its way" in coming
    needs = system_prompt(LUNA, PicturePlan("at the beach", "needs_reference"))
    assert "add a reference photo" in needs
    login = system_prompt(LUNA, PicturePlan("at the beach", "login_required"))
    assert "log in" in login and "add a reference photo" not in login and "on its way" not in login


def test_history_ends_with_the_message_being_answered() -> None:
    talk = conversation(3)
    talk.receive("message 4", 4)
    talk.receive("message 5", 5)  # arrived meanwhile: not part of the answer to 4
    messages = llm_messages(LUNA, talk.state, message_id(4))
    assert messages[0]["role"] == "system"
    assert [m["content"] for m in messages[1:]] == [
        "message 1", "reply 1", "message 2", "reply 2", "message 3", "reply 3", "message 4"]


def test_history_is_bounded_by_messages_and_characters() -> None:
    talk = conversation(10)
    talk.receive("last", 11)
    by_count = llm_messages(LUNA, talk.state, message_id(11), max_messages=4)
    # The newest four turns, then trimmed to start at a user turn.
    assert [m["content"] for m in by_count[1:]] == ["message 10", "reply 10", "last"]
    by_chars = llm_messages(LUNA, talk.state, message_id(11), max_chars=25)
    assert [m["content"] for m in by_chars[1:]] == ["message 10", "reply 10", "last"]
    long = Talk()
    long.receive("x" * 1000, 1)
    (_, only) = llm_messages(LUNA, long.state, message_id(1), max_chars=100)
    assert only == {"role": "user", "content": "x" * 100}


def test_a_refused_turn_is_left_out_of_the_history_so_it_is_not_repeated() -> None:
    talk = Talk()
    talk.receive("do you like cats?", 1)
    talk.reply(1, "I'm sorry, but I cannot assist with that.", offline=False)
    talk.receive("what about dogs?", 2)
    talk.reply(2, "Dogs are lovely!", offline=False)
    talk.receive("and birds?", 3)
    sent = llm_messages(LUNA, talk.state, message_id(3))
    assert [m["content"] for m in sent[1:]] == ["what about dogs?", "Dogs are lovely!", "and birds?"]


def test_a_correction_says_what_the_first_answer_got_wrong() -> None:
    coming = PicturePlan("at the beach", "requested", message_id(9))
    assert "Do not refuse" in system_prompt(LUNA, coming, "refused_a_picture_being_made")
    assert "No picture is sent" in system_prompt(LUNA, None, "promised_a_picture_not_being_made")
    assert "Do not refuse" not in system_prompt(LUNA, coming)
