"""Picture wishes read from the model's verdict; replies whose words contradict the app's picture decision."""

from __future__ import annotations

import pytest

from services.chat.agreement import disagreement, refuses
from services.chat.wishes import Wish, read_wish, wish_messages, worth_asking


@pytest.mark.parametrize(("text", "worth"), [
    ("I wish I could see how you look in a winter coat in the snow", True),
    ("bet you'd look amazing at the beach", True),
    ("what are you wearing tonight?", True),
    ("how was your day?", False),
    ("tell me a joke", False),
])
def test_only_messages_about_seeing_or_wearing_are_worth_a_model_call(text: str, worth: bool) -> None:
    assert worth_asking(text) is worth


def test_the_question_names_the_character_and_carries_the_message_as_written() -> None:
    system, user = wish_messages("Luna", "I wish I could see you in the snow")
    assert "Luna" in system["content"] and '"picture": true' in system["content"]
    assert user == {"role": "user", "content": "I wish I could see you in the snow"}


@pytest.mark.parametrize(("answer", "wish"), [
    ('{"picture": true, "scene": "in a winter coat in the snow"}', Wish(True, "in a winter coat in the snow")),
    ('```json\n{"picture": false}\n```', Wish(False)),
    ('Sure! Here is my answer: {"picture": true, "scene": "at the beach."} Hope it helps', Wish(True, "at the beach")),
    ('{"picture": "yes"}', Wish(True, "")),
    ("Yes: in a red dress at a party", Wish(True, "in a red dress at a party")),
    ("No.", Wish(False)),
    ("I think the user might want something", Wish(False)),
    ("", Wish(False)),
])
def test_the_verdict_is_read_leniently_and_doubt_is_no(answer: str, wish: Wish) -> None:
    assert read_wish(answer) == wish


@pytest.mark.parametrize("text", ["I cannot assist with that.", "I'm sorry, but I can't help with that request.",
                                  "As an AI language model, I don't have a body.", "I’m unable to do that."])
def test_refusals(text: str) -> None:
    assert refuses(text) and disagreement(text, "started") == "refused_a_picture_being_made"


@pytest.mark.parametrize("text", ["I can't wait to see you!", "I won't lie, I love snow.", "Sure, give me a sec!"])
def test_not_refusals(text: str) -> None:
    assert not refuses(text) and disagreement(text, "started") is None


@pytest.mark.parametrize("text", ["Here's a selfie from the beach!", "*sends a photo of me in the snow*",
                                  "[Image: Luna smiling]", "I'll send you a quick pic!", "Sending you my selfie now",
                                  "Your picture is on its way."])
def test_a_promised_picture_contradicts_only_when_none_is_made(text: str) -> None:
    assert disagreement(text, "none") == "promised_a_picture_not_being_made"
    assert disagreement(text, "started") is None
    # A picture the app declined (no reference photo yet) may be promised for later.
    assert disagreement(text, "declined") is None


@pytest.mark.parametrize("text", ["I took a photo of a cat yesterday", "*smiles*", "I love the snow too!"])
def test_talk_about_pictures_is_not_a_promise(text: str) -> None:
    assert disagreement(text, "none") is None
