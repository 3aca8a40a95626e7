"""Tool calls written as text: each real model's form is found and taken out, prose is left alone, and a
stream shows none of a call even when it arrives a few characters at a time."""

from __future__ import annotations

import json

import pytest

from services.chat.tool_text import ToolTextFilter, text_tool_calls
from services.runtime.llm import ToolCall

KNOWN = frozenset({"request_picture"})
CALL = ToolCall("request_picture", json.dumps({"request": "in the snow"}))
JSON = '{"name": "request_picture", "arguments": {"request": "in the snow"}}'

FORMS = {
    "qwen tags": f"<tool_call>\n{JSON}\n</tool_call>",
    "bare json": JSON,
    "fenced json": f"```json\n{JSON}\n```",
    "llama 3.1 python tag": '<|python_tag|>{"name": "request_picture", "parameters": {"request": "in the snow"}}'
                            "<|eom_id|>",
    "llama 3.1 function tag": '<function=request_picture>{"request": "in the snow"}</function>',
    "mistral": f"[TOOL_CALLS] [{JSON}]",
    "openai shape": '{"type": "function", "function": {"name": "request_picture", '
                    '"arguments": "{\\"request\\": \\"in the snow\\"}"}}',
}


@pytest.mark.parametrize("written", FORMS.values(), ids=FORMS.keys())
@pytest.mark.parametrize("around", [("", ""), ("Sure, one sec!\n", ""), ("", "\nHope you like it!")],
                         ids=["alone", "after words", "before words"])
def test_each_written_form_is_a_call_and_leaves_only_the_words(written: str, around: tuple[str, str]) -> None:
    found = text_tool_calls(around[0] + written + around[1], KNOWN)
    assert found.calls == (CALL,)
    assert found.text == " ".join(part.strip() for part in around if part.strip())


@pytest.mark.parametrize("prose", ["{smiles} Hi there!", "I love {you} so much", "Hello [TOOL] world",
                                   'She said "name": fine', "Plain words, nothing else."])
def test_prose_is_not_a_call(prose: str) -> None:
    assert text_tool_calls(prose, KNOWN).calls == () and text_tool_calls(prose, KNOWN).text == prose


def test_a_call_cut_short_by_max_tokens_is_still_taken_out_and_its_scene_kept() -> None:
    found = text_tool_calls('Okay!\n<tool_call>\n{"name": "request_picture", "arguments": {"request": "at the', KNOWN)
    assert found.text == "Okay!" and found.calls == (ToolCall("request_picture", '{"request": "at the"}'),)


def test_a_call_of_an_unknown_tool_is_hidden_but_not_a_call() -> None:
    found = text_tool_calls('{"name": "web_search", "arguments": {"q": "cats"}}\nCats are great.', KNOWN)
    assert found.calls == () and found.text == "Cats are great."


async def stream(text: str, size: int) -> tuple[str, object]:
    shown: list[str] = []

    async def sink(delta: str) -> None:
        shown.append(delta)

    filtered = ToolTextFilter(sink, KNOWN)
    for start in range(0, len(text), size):
        await filtered(text[start:start + size])
    found = await filtered.finish()
    return "".join(shown), found


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
async def test_a_stream_never_shows_any_part_of_a_call(size: int) -> None:
    text = f"Hi! Let me see...\n<tool_call>\n{JSON}\n</tool_call>"
    shown, found = await stream(text, size)
    assert shown.strip() == "Hi! Let me see..." and "<" not in shown and "{" not in shown
    assert found.calls == (CALL,) and found.text == "Hi! Let me see..."


@pytest.mark.parametrize("size", [1, 4, 1000])
async def test_a_stream_of_prose_is_shown_whole_even_what_was_held_back(size: int) -> None:
    text = "Well {grins}\n{not json at all} and <b>bold</b> and a [TOOL] tag"
    shown, found = await stream(text, size)
    assert shown == text and found.text == text and found.calls == ()
