"""Tool calls that a model wrote as text instead of as `tool_calls`: found, taken out, never shown. Pure.

Small models served without a tool-call parser (llama-server without --jinja, llama-cpp-python's
default chat format, Ollama with a template that lacks tools) write the call into the content:
Qwen/Hermes `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, a bare or fenced JSON object,
Llama 3.1's `<|python_tag|>{...}` or `<function=name>{...}</function>`, Mistral's `[TOOL_CALLS] [...]`.

`ToolTextFilter` sits between the stream and the user: text passes through as it comes, except from
the point where a call might begin, which is held back until the answer ends; `finish()` then says
which calls were in it and releases any held text that was not one after all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.runtime.llm import ToolCall

__all__ = ["ToolTextFilter", "text_tool_calls"]

# Where a written call may begin. A `{` or a fence counts only at the start of a line: prose braces
# mid-sentence ("{smiles}") are rare and are released at the end anyway.
_OPENERS = ("<tool_call>", "<|python_tag|>", "<function=", "[TOOL_CALLS]", "```", "{", "[{")
_CLOSERS = ("</tool_call>", "</function>", "<|eom_id|>", "<|eot_id|>")
_FUNCTION_TAG = re.compile(r"<function=([\w.-]+)>", re.ASCII)
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Found:
    """The answer's text with the written calls taken out, and those calls."""

    text: str
    calls: tuple[ToolCall, ...]


def text_tool_calls(text: str, known: frozenset[str]) -> Found:
    """The calls of tools in `known` written into `text`; anything shaped like a call is taken out of the text."""
    calls: list[ToolCall] = []
    # The text between calls; a call taken out joins its neighbours with one space.
    pieces = [""]
    rest = text
    while rest:
        start = _call_start(rest)
        if start is None:
            pieces[-1] += rest
            break
        pieces[-1] += rest[:start]
        found, length = _parse_call(rest[start:], known)
        if length == 0:
            # Not a call after all: the opener stays text, and the search goes on after it.
            pieces[-1] += rest[start]
            rest = rest[start + 1:]
            continue
        calls.extend(found)
        pieces.append("")
        rest = rest[start + length:]
    if len(pieces) == 1:
        return Found(text.strip(), ())
    return Found(" ".join(piece.strip() for piece in pieces if piece.strip()), tuple(calls))


class ToolTextFilter:
    """Passes streamed text on to `sink`, holding back whatever may be a written tool call."""

    def __init__(self, sink: Callable[[str], Awaitable[None]], known: frozenset[str]) -> None:
        self._sink = sink
        self._known = known
        self._text = ""
        self._released = 0

    async def __call__(self, delta: str) -> None:
        self._text += delta
        safe = _safe_end(self._text, self._released)
        if safe > self._released:
            chunk, self._released = self._text[self._released:safe], safe
            await self._sink(chunk)

    async def finish(self) -> Found:
        """The whole answer, parsed; held text that held no call is sent on now."""
        before, held = self._text[:self._released], self._text[self._released:]
        found = text_tool_calls(held, self._known)
        if found.text == held.strip():
            if held:
                await self._sink(held)
            return Found(self._text.strip(), found.calls)
        if found.text:
            await self._sink((" " if before and not before[-1].isspace() else "") + found.text)
        return Found(" ".join(part for part in (before.strip(), found.text) if part), found.calls)


def _safe_end(text: str, released: int) -> int:
    """How much of `text` can go to the user now: up to the earliest place a call might be starting."""
    start = _call_start(text[released:], partial=True)
    return len(text) if start is None else released + start


def _call_start(text: str, *, partial: bool = False) -> int | None:
    """Where in `text` a written call (or, with `partial`, the beginning of an opener) starts."""
    best: int | None = None
    for opener in _OPENERS:
        index = _find_opener(text, opener)
        if index is not None and (best is None or index < best):
            best = index
    if partial:
        # The text may end in the first characters of an opener ("<tool_" arriving in pieces).
        for opener in _OPENERS:
            for size in range(len(opener) - 1, 0, -1):
                if text.endswith(opener[:size]) and _at_line_start(text, len(text) - size, opener):
                    index = len(text) - size
                    best = index if best is None else min(best, index)
                    break
    return best


def _find_opener(text: str, opener: str) -> int | None:
    index = text.find(opener)
    while index != -1:
        if _at_line_start(text, index, opener):
            return index
        index = text.find(opener, index + 1)
    return None


def _at_line_start(text: str, index: int, opener: str) -> bool:
    if opener.startswith("<") or opener.startswith("[T"):
        return True  # the tags mean a call wherever they stand
    return index == 0 or text[:index].rstrip(" \t").endswith("\n") or not text[:index].strip()


def _parse_call(text: str, known: frozenset[str]) -> tuple[list[ToolCall], int]:
    """The calls at the start of `text` and how many characters they take; (_, 0) when it is not a call."""
    for tag, close in (("<tool_call>", "</tool_call>"), ("<|python_tag|>", None), ("[TOOL_CALLS]", None)):
        if text.startswith(tag):
            calls, used = _json_calls(text[len(tag):], known)
            if used == 0:
                # A tag is never prose: a call cut short (max_tokens) or malformed is still taken out.
                extent = _tag_extent(text, close)
                return _salvaged(text[:extent], known), extent
            end = len(tag) + used
            end += _closing(text[end:], close)
            return calls, end
    if text.startswith("<function="):
        match = _FUNCTION_TAG.match(text)
        if match is None:
            return [], _tag_extent(text, "</function>")
        try:
            arguments, used = _DECODER.raw_decode(text[match.end():].lstrip())
        except ValueError:
            extent = _tag_extent(text, "</function>")
            body = text[match.end():extent].lstrip().lstrip("{")
            return _salvaged(f'{{"name": "{match.group(1)}", {body}', known), extent
        end = match.end() + (len(text[match.end():]) - len(text[match.end():].lstrip())) + used
        end += _closing(text[end:], "</function>")
        name = match.group(1)
        return ([ToolCall(name, json.dumps(arguments))] if name in known else []), end
    if text.startswith("```"):
        fence = re.match(r"```[a-zA-Z]*\s*", text)
        assert fence is not None
        calls, used = _json_calls(text[fence.end():], known)
        if used == 0:
            return [], 0
        end = fence.end() + used
        closing = re.match(r"\s*```", text[end:])
        return calls, end + (closing.end() if closing else 0)
    return _json_calls(text, known)


def _json_calls(text: str, known: frozenset[str]) -> tuple[list[ToolCall], int]:
    """One call object, or a list of them, at the start of `text` (after blanks)."""
    stripped = text.lstrip()
    try:
        value, used = _DECODER.raw_decode(stripped)
    except ValueError:
        return [], 0
    items = value if isinstance(value, list) else [value]
    shaped = [_as_call(item) for item in items]
    if not items or any(call is None for call in shaped):
        return [], 0
    calls = [call for call in shaped if call is not None and call.name in known]
    return calls, len(text) - len(stripped) + used


def _as_call(item: object) -> ToolCall | None:
    """A `{"name": ..., "arguments"|"parameters": {...}}` object as a call; anything else is not one."""
    if not isinstance(item, dict):
        return None
    function = item.get("function") if isinstance(item.get("function"), dict) else item
    name = function.get("name")
    arguments = function.get("arguments", function.get("parameters"))
    if not isinstance(name, str) or not name or (arguments is not None and not isinstance(arguments, dict | str)):
        return None
    if arguments is None and set(function) - {"name"}:
        return None
    if isinstance(arguments, str):
        return ToolCall(name, arguments)
    return ToolCall(name, json.dumps(arguments or {}))


def _tag_extent(text: str, close: str | None) -> int:
    """How far a tagged call that did not parse reaches: to its closing tag, else to the end of the answer."""
    ends = [text.find(c) + len(c) for c in (*_CLOSERS, *([close] if close else [])) if text.find(c) != -1]
    return min(ends) if ends else len(text)


def _salvaged(text: str, known: frozenset[str]) -> list[ToolCall]:
    """A known call read out of a broken one: its name, and whatever its string arguments got to say."""
    for closer in (*_CLOSERS, "</tool_call>", "</function>"):
        text = text.replace(closer, "")
    name = re.search(r'"name"\s*:\s*"([\w.-]+)"', text)
    if name is None or name.group(1) not in known:
        return []
    arguments = dict(re.findall(r'"(\w+)"\s*:\s*"([^"\\]*)', text[name.end():]))
    return [ToolCall(name.group(1), json.dumps(arguments))]


def _closing(text: str, close: str | None) -> int:
    """The length of blanks and a closing tag (or an end-of-turn token) that follow a call."""
    match = re.match(r"\s*(?:" + "|".join(re.escape(c) for c in (*_CLOSERS, *([close] if close else []))) + r")?",
                     text)
    return match.end() if match else 0
