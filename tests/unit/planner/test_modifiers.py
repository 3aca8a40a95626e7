"""Prompt modifiers: what each flag accepts, what it refuses, and the text left for planning."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.planner.planning import InvalidModifier, Modifiers, PlanningError, parse_modifiers


def test_text_without_flags_comes_back_unchanged_apart_from_spacing():
    text, modifiers = parse_modifiers("  put her on a beach,   sitting on a towel ")
    assert text == "put her on a beach, sitting on a towel"
    assert modifiers == Modifiers()


def test_every_long_flag():
    text, m = parse_modifiers(
        "on a beach --model qwen-image-edit --style anime --width 768 --height 1024 --count 2 --seed 42 --no hat"
    )
    assert text == "on a beach"
    assert m == Modifiers(model="qwen-image-edit", style="anime", width=768, height=1024, count=2, seed=42,
                          negative_prompt="hat")


def test_every_short_flag():
    text, m = parse_modifiers("on a beach -m qwen-image-edit -w 512 -h 640 -c 3 -s 7 -n hat")
    assert text == "on a beach"
    assert (m.model, m.width, m.height, m.count, m.seed) == ("qwen-image-edit", 512, 640, 3, 7)
    assert m.negative_prompt == "hat"


def test_flag_equals_value_and_flags_in_the_middle():
    text, m = parse_modifiers("on a beach --seed=9 sitting on a towel")
    assert text == "on a beach sitting on a towel"
    assert m.seed == 9


def test_quoted_negative_stops_at_the_closing_quote():
    text, m = parse_modifiers('on a beach --no "hat, sunglasses" sitting --seed 3')
    assert m.negative_prompt == "hat, sunglasses"
    assert text == "on a beach sitting"
    assert m.seed == 3


def test_unquoted_negative_runs_to_the_next_flag():
    text, m = parse_modifiers("on a beach --no hat, sunglasses and a scarf --seed 3")
    assert m.negative_prompt == "hat, sunglasses and a scarf"
    assert text == "on a beach"


def test_negative_may_repeat_and_adds_up():
    _, m = parse_modifiers("on a beach --no hat -n 'blurry'")
    assert m.negative_prompt == "hat, blurry"


def test_dashes_inside_words_are_not_flags():
    text, m = parse_modifiers("in a t-shirt, a well-known cafe, smiling -ish")
    assert text == "in a t-shirt, a well-known cafe, smiling -ish"
    assert m == Modifiers()


def test_names_are_lowercased():
    _, m = parse_modifiers("x --style Anime --model QWEN-Image-Edit")
    assert (m.style, m.model) == ("anime", "qwen-image-edit")


@pytest.mark.parametrize(
    ("request_text", "flag", "message"),
    [
        ("x --count 7", "--count", "--count must be between 1 and 4, got 7"),
        ("x -c 0", "--count", "--count must be between 1 and 4, got 0"),
        ("x --count two", "--count", "--count needs a whole number, got 'two'"),
        ("x --seed -5", "--seed", "--seed must be between 0 and 18446744073709551615, got -5"),
        ("x --seed 18446744073709551616", "--seed", "--seed must be between 0 and 18446744073709551615"),
        ("x --width 4000", "--width", "--width must be between 64 and 2048 pixels, got 4000"),
        ("x -h 32", "--height", "--height must be between 64 and 2048 pixels, got 32"),
        ("x --width 768px", "--width", "--width needs a whole number, got '768px'"),
        ("x --seed", "--seed", "--seed needs a value"),
        ("x --seed --count 2", "--seed", "--seed needs a value"),
        ("x --no --seed 1", "--no", "--no needs a value"),
        ("x --seed 1 --seed 2", "--seed", "--seed is given twice"),
        ("x --style anime!", "--style", "--style takes a name"),
        ("x --foo 3", "--foo", "unknown modifier --foo; known modifiers: --model (-m), --width (-w)"),
        ("x -q 3", "-q", "unknown modifier -q"),
    ],
)
def test_bad_modifiers_are_clear_errors(request_text, flag, message):
    with pytest.raises(InvalidModifier) as caught:
        parse_modifiers(request_text)
    assert str(caught.value).startswith(message)
    assert caught.value.flag == flag
    assert caught.value.rule == f"modifier.{flag.lstrip('-')}"
    assert isinstance(caught.value, PlanningError)


@pytest.mark.parametrize(("given", "used"), [(64, 64), (68, 72), (67, 64), (770, 768), (772, 776), (2047, 2048)])
def test_sizes_round_to_the_nearest_multiple_of_8(given, used):
    _, m = parse_modifiers(f"x -w {given}")
    assert m.width == used


def test_seed_takes_the_full_unsigned_64_bit_range():
    _, m = parse_modifiers("x --seed 18446744073709551615")
    assert m.seed == 2**64 - 1


def test_modifiers_are_frozen():
    with pytest.raises(ValidationError):
        Modifiers().count = 3  # type: ignore[misc]
