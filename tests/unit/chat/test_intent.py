"""Which chat messages ask for a picture of the character, and the scene they ask for."""

from __future__ import annotations

import pytest

from services.chat.intent import DEFAULT_SCENE, picture_request, spoken_scene


@pytest.mark.parametrize(
    ("text", "scene"),
    [
        ("send me a picture of you at the beach", "at the beach"),
        ("Send me a selfie!", DEFAULT_SCENE),
        ("can you send me a pic of yourself in a red dress please?", "in a red dress"),
        ("show me you at the gym", "at the gym"),
        ("show me what you look like at the beach", "at the beach"),
        ("can I see you in a bikini?", "in a bikini"),
        ("pic of you at the beach", "at the beach"),
        ("could I get a photo of you wearing a hat", "wearing a hat"),
        ("I'd love a picture of you on a yacht at sunset", "on a yacht at sunset"),
        ("I\u2019d love a pic of you in the snow", "in the snow"),
        ("do you have any photos of yourself at work?", "at work"),
        ("please take a photo of yourself in the kitchen", "in the kitchen"),
        ("take a selfie at the cafe", "at the cafe"),
        ("Luna, send me another photo from Paris", "from Paris"),
        ("i want to see you in a red dress", "in a red dress"),
        ("selfie?", DEFAULT_SCENE),
        ("another pic at the beach pls", "at the beach"),
        ("hey, send me a pic at the beach. how was your day?", "at the beach"),
        ("send me a pic at the beach --count 2 --style anime", "at the beach --count 2 --style anime"),
        ("selfie --seed 7", f"{DEFAULT_SCENE} --seed 7"),
    ],
)
def test_picture_requests_and_their_scene(text: str, scene: str) -> None:
    assert picture_request(text) == scene


@pytest.mark.parametrize(
    "text",
    [
        "I saw a picture of a cat",
        "do you like taking photos?",
        "I sent you a picture yesterday",
        "I took a selfie at the beach today",
        "show me how to cook pasta",
        "can I see your recipe?",
        "I'd love to see you again",
        "I want to see you tomorrow",
        "can you send me a picture of the menu?",
        "send me a photo editing tip",
        "what camera do you use for your photos?",
        "picture this: a quiet night",
        "photos are my hobby",
        "nice picture!",
        "I have a photo of you on my desk",
        "your photo is beautiful",
        "send me the recipe",
        "hello there",
    ],
)
def test_messages_that_ask_for_no_picture(text: str) -> None:
    assert picture_request(text) is None


def test_the_spoken_scene_leaves_out_planner_flags() -> None:
    assert spoken_scene("at the beach --count 2 --style anime") == "at the beach"
    assert spoken_scene("at the beach") == "at the beach"
