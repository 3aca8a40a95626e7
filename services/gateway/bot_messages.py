"""A bot's message read for the bot API (POST /request, POST /batch). Pure.

The person names the character the way chat bots let them: `@luna on a beach` (a mention anywhere, as a
word of its own, with punctuation after it allowed) or `--character luna`. Every other word and flag stays
in the text for the planner, which reads the modifiers (`--model -w -h --no -c -s --style`). A message
that names no character is a text-to-image request. A character id is lower case (`@Luna` names `luna`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BotMessage", "MessageProblem", "asks_for_count", "character_named", "read_message"]

_ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
# `(?<!\S)`: a mention starts a word, so an address such as me@example.com is text, not a character.
_MENTION = re.compile(rf"(?<!\S)@(?P<id>{_ID})[,.:;!?]*(?=\s|$)")
_FLAG = re.compile(r"(?<!\S)--character(?:=(?P<inline>\S*)|[ \t]+(?P<value>[^\s-]\S*))?(?=\s|$)", re.IGNORECASE)
_CHARACTER_ID = re.compile(rf"^{_ID}$")
# The planner reads flags without regard to case (`-C 2` is `--count 2`).
_COUNT = re.compile(r"(?<!\S)(?:--count|-c)(?:=\S*)?(?=\s|$)", re.IGNORECASE)


class MessageProblem(ValueError):
    """What is wrong with a message, in words for the person who wrote it; `code` for programs."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class BotMessage:
    """The character a message names (None: a text-to-image request), and the text for the planner."""

    character_id: str | None
    text: str


def read_message(message: str) -> BotMessage:
    """The character named in `message` and the rest of it; MessageProblem when it cannot be read."""
    named: list[str] = []

    def mention(match: re.Match[str]) -> str:
        named.append(match.group("id").lower())
        return " "

    def flag(match: re.Match[str]) -> str:
        value = match.group("inline") if match.group("inline") is not None else match.group("value")
        named.append(character_named(value or "", "--character"))
        return " "

    text = _MENTION.sub(mention, _FLAG.sub(flag, message))
    if len(set(named)) > 1:
        raise MessageProblem("several_characters", f"the message names {len(set(named))} characters "
                                                   f"({', '.join(sorted(set(named)))}); a picture has one")
    text = " ".join(text.split())
    if not text:
        raise MessageProblem("empty_request", "say what the picture should show, e.g. \"@luna on a beach at sunset\"")
    return BotMessage(named[0] if named else None, text)


def character_named(value: str, where: str = "character") -> str:
    """The character id `value` names (lower case); MessageProblem when it cannot be one."""
    if not _CHARACTER_ID.match(value):
        raise MessageProblem("invalid_character", f"{where} needs a character id such as luna "
                                                  "(GET /characters lists them)")
    return value.lower()


def asks_for_count(text: str) -> bool:
    """Whether the text carries `--count` / `-c` (one request asking for several pictures)."""
    return _COUNT.search(text) is not None
