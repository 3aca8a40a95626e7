"""A bot's message read for the bot API, and who a nick is: pure rules, no I/O."""

from __future__ import annotations

import pytest

from services.gateway.auth import User, nick_problem, nick_user_id
from services.gateway.bot_jobs import nick_of
from services.gateway.bot_messages import BotMessage, MessageProblem, asks_for_count, read_message


@pytest.mark.parametrize(
    ("message", "read"),
    [
        ("@luna on a beach -s 3", BotMessage("luna", "on a beach -s 3")),
        ("draw @Luna, on a beach", BotMessage("luna", "draw on a beach")),
        ("on a beach --character luna --seed 2", BotMessage("luna", "on a beach --seed 2")),
        ("--character=mia-12ab on a hill", BotMessage("mia-12ab", "on a hill")),
        ("@luna --character luna on a beach", BotMessage("luna", "on a beach")),
        ("a fox, mail me@example.com", BotMessage(None, "a fox, mail me@example.com")),
        ("a lighthouse   at dawn -c 2", BotMessage(None, "a lighthouse at dawn -c 2")),
    ],
)
def test_the_character_is_taken_out_and_the_rest_left_for_the_planner(message: str, read: BotMessage) -> None:
    assert read_message(message) == read


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("@luna @marco at the beach", "several_characters"),
        ("@luna", "empty_request"),
        ("--character", "invalid_character"),
        ("--character=?? on a beach", "invalid_character"),
        ("--character -s 3 on a beach", "invalid_character"),
    ],
)
def test_what_cannot_be_read_says_why(message: str, code: str) -> None:
    with pytest.raises(MessageProblem) as problem:
        read_message(message)
    assert problem.value.code == code and problem.value.detail


def test_count_flags_are_found_in_any_case_but_not_inside_words() -> None:
    assert [asks_for_count(t) for t in ("a -c 2", "a --count=3", "a -C 2", "t-c 2 sweets", "a cat")] == [
        True, True, True, False, False]


def test_a_nick_is_a_user_under_its_key_and_sees_only_its_own() -> None:
    bot = User("u-" + "a" * 32, "registered", "api_key")
    alice = bot.as_nick("alice")
    assert (alice.id, alice.account, alice.nick) == (nick_user_id(bot.id, "alice"), bot.id, "alice")
    assert bot.sees(alice.id) and bot.sees(bot.id) and alice.sees(alice.id)
    assert not alice.sees(bot.as_nick("bob").id) and not alice.sees(bot.id)
    other = User("u-" + "b" * 32, "registered", "api_key")
    assert not bot.sees(other.as_nick("alice").id) and not other.sees(alice.id)
    # A user id that merely starts like another one is someone else.
    assert not User("u-1", "registered", "api_key").sees("u-10/alice")
    assert nick_of(alice.id) == "alice" and nick_of(bot.id) is None


@pytest.mark.parametrize("nick", ["alice", "@bob:matrix.org", "[x]\\`^{}|", "Ålice", "x" * 64])
def test_irc_and_matrix_nicks_are_usable(nick: str) -> None:
    assert nick_problem(nick) is None


@pytest.mark.parametrize("nick", ["", "two words", "a/b", "tab\there", "nul\x00", "x" * 65])
def test_a_nick_that_could_be_confused_is_refused(nick: str) -> None:
    assert nick_problem(nick) is not None

