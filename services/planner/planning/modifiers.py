"""Prompt modifiers (`--seed 7`, `-w 768`, `--no "hat"` ...) parsed out of a request before planning.

Grammar, chosen to be forgiving with ordinary text and strict with flags:

* A flag is a whitespace-separated token `--name` or `-x` (one letter), optionally `--name=value`.
  "t-shirt" or "-ish" are not flags: the dash must start the token and a single dash takes one letter.
* Every flag takes a value: the next token, or a quoted string ("..." or '...').
  `--no` also takes everything up to the next flag when its value is not quoted.
* `--no` may repeat (its values add up, as negatives naturally do); any other flag given twice is an error.
* Unknown flags are errors: a typo must not silently become part of the prompt.
* Sizes must lie in 64..2048 and are rounded to the nearest multiple of 8, since edit models work on
  8-pixel latent blocks; rounding by at most 4 pixels is invisible, refusing it would only annoy.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from services.planner.planning.errors import InvalidModifier

__all__ = ["MAX_COUNT", "MAX_SIZE", "MIN_SIZE", "Modifiers", "ParsedRequest", "parse_modifiers"]

MIN_SIZE, MAX_SIZE, SIZE_STEP = 64, 2048, 8
MAX_COUNT = 4
MAX_SEED = 2**64 - 1

_ALIASES = {
    "-m": "--model", "-w": "--width", "-h": "--height", "-n": "--no", "-c": "--count", "-s": "--seed",
}
_KNOWN = ("--model", "--width", "--height", "--no", "--count", "--seed", "--style")
_FLAG = re.compile(r"(?<!\S)(?P<flag>--[A-Za-z][A-Za-z-]*|-[A-Za-z])(?:=(?P<inline>\S*))?(?=\s|$)")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Modifiers(BaseModel):
    """What the user fixed with flags; None means 'let the plan decide'."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = None
    style: str | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str = ""
    count: int = 1
    seed: int | None = None


class ParsedRequest(NamedTuple):
    """The request text without its flags, and the flags' values."""

    text: str
    modifiers: Modifiers


def parse_modifiers(request: str) -> ParsedRequest:
    """Split `request` into clean text and `Modifiers`; raise `InvalidModifier` on any bad flag."""
    text_parts: list[str] = []
    values: dict[str, object] = {}
    negatives: list[str] = []
    pos = 0
    while (match := _FLAG.search(request, pos)) is not None:
        text_parts.append(request[pos:match.start()])
        flag = _canonical(match.group("flag"))
        value, pos = _read_value(request, match, flag)
        if flag == "--no":
            negatives.append(value)
            continue
        field = flag.removeprefix("--")
        if field in values:
            raise InvalidModifier(flag, f"{flag} is given twice; give it once")
        values[field] = _convert(flag, value)
    text_parts.append(request[pos:])
    text = " ".join(" ".join(text_parts).split())
    return ParsedRequest(text, Modifiers(negative_prompt=", ".join(n for n in negatives if n), **values))


def _canonical(raw: str) -> str:
    flag = _ALIASES.get(raw.lower(), raw.lower())
    if flag not in _KNOWN:
        known = ", ".join(f"{long} ({short})" if (short := _short_of(long)) else long for long in _KNOWN)
        raise InvalidModifier(raw, f"unknown modifier {raw}; known modifiers: {known}")
    return flag


def _short_of(flag: str) -> str | None:
    return next((short for short, long in _ALIASES.items() if long == flag), None)


def _read_value(request: str, match: re.Match[str], flag: str) -> tuple[str, int]:
    """The flag's value and where the text resumes after it."""
    if match.group("inline") is not None:
        return _unquote(match.group("inline")), match.end()
    start = match.end()
    while start < len(request) and request[start].isspace():
        start += 1
    if start < len(request) and request[start] in "\"'":
        end = request.find(request[start], start + 1)
        if end != -1:
            return request[start + 1:end].strip(), end + 1
    if flag == "--no":
        following = _FLAG.search(request, start)
        end = following.start() if following else len(request)
        value = request[start:end].strip().rstrip(",;")
        if not value:
            raise InvalidModifier(flag, f"{flag} needs a value, e.g. {_EXAMPLES[flag]}")
        return value, end
    token = re.match(r"\S*", request[start:]).group()
    if not token or _FLAG.match(request, start):
        raise InvalidModifier(flag, f"{flag} needs a value, e.g. {_EXAMPLES[flag]}")
    return token, start + len(token)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


_EXAMPLES = {
    "--model": "--model qwen-image-edit", "--style": "--style anime", "--width": "--width 768",
    "--height": "--height 1024", "--count": "--count 2", "--seed": "--seed 42", "--no": '--no "hat"',
}


def _convert(flag: str, value: str) -> object:
    if flag in ("--model", "--style"):
        name = value.lower()
        if not _NAME.match(name):
            raise InvalidModifier(flag, f"{flag} takes a name of letters, digits, '-', '_' or '.', got {value!r}")
        return name
    number = _whole_number(flag, value)
    if flag == "--count":
        if not 1 <= number <= MAX_COUNT:
            raise InvalidModifier(flag, f"--count must be between 1 and {MAX_COUNT}, got {number}")
        return number
    if flag == "--seed":
        if not 0 <= number <= MAX_SEED:
            raise InvalidModifier(flag, f"--seed must be between 0 and {MAX_SEED}, got {number}")
        return number
    if not MIN_SIZE <= number <= MAX_SIZE:
        raise InvalidModifier(flag, f"{flag} must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {number}")
    # Halves round up so 68 -> 72, keeping the result inside 64..2048 for every accepted input.
    return int((number + SIZE_STEP // 2) // SIZE_STEP * SIZE_STEP)


def _whole_number(flag: str, value: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", value):
        raise InvalidModifier(flag, f"{flag} needs a whole number, got {value!r}")
    return int(value)
