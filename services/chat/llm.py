"""The LLM behind the replies: a small `ReplyModel` protocol and its implementation over the shared client.

`OpenAIReplyModel` streams a chat completion from any OpenAI-compatible endpoint through
`services.runtime.llm.LlmClient`, hands each text delta to the caller as it arrives, and reports usage
and a `request_picture` tool call if the model made one, as a real call or written into its text (the
written form is held back from the stream and never shown: see `tool_text`). Every failure of the
client is `LlmUnavailable` here: the caller answers offline instead. A server that refuses the tool is
asked again without it, and not offered it again. `wish` asks the model the cheap yes/no question of
`wishes`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from services.chat.errors import LlmUnavailable
from services.chat.follow_up import PictureBasis
from services.chat.prompts import PICTURE_TOOL
from services.chat.tool_text import ToolTextFilter
from services.chat.wishes import WISH_MAX_TOKENS, Wish, read_wish, wish_messages
from services.runtime.llm import (
    DeltaSink, LlmClient, LlmError, LlmRejected, LlmSettings, ToolCall, Usage, estimate_tokens,
)

__all__ = ["DeltaSink", "LlmAnswer", "OpenAIReplyModel", "ReplyModel", "WishAnswer", "estimate_tokens"]

TOOLS = frozenset({"request_picture"})
TEXT_TOOL_CALLS = Counter("likeness_chat_text_tool_calls_total",
                          "Tool calls a model wrote into its text (taken out, never shown), by tool", ["tool"])

Messages = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class LlmAnswer:
    """A whole streamed answer: its text, token usage, and the scene of a `request_picture` call if any."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    picture_request: str | None = None
    # Which picture the call's edit starts from, when the model said (`from` of `request_picture`).
    picture_basis: PictureBasis | None = None
    # False when the server sent no usage and the counts are estimates (about four characters a token).
    usage_reported: bool = True


@dataclass(frozen=True)
class WishAnswer:
    """The verdict of the picture-wish question, and what asking cost."""

    wish: Wish
    usage: Usage


class ReplyModel(Protocol):
    """Streams one reply; raises `LlmUnavailable` when there is none to be had."""

    model: str

    async def stream(self, messages: Messages, on_delta: DeltaSink, *, offer_picture_tool: bool = False) -> LlmAnswer:
        ...

    async def wish(self, character_name: str, text: str) -> WishAnswer:
        ...

    async def aclose(self) -> None: ...


class OpenAIReplyModel:
    """`ReplyModel` over the shared `LlmClient`, streaming; no retries (the offline persona is the retry)."""

    def __init__(self, client: LlmClient) -> None:
        self.model = client.model
        self._client = client
        # None until known; False once the server refused the tool.
        self._tools: bool | None = None

    @classmethod
    def connect(cls, settings: LlmSettings, *, http_client: Any = None) -> OpenAIReplyModel:
        return cls(LlmClient(settings, http_client=http_client, purpose="chat"))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream(self, messages: Messages, on_delta: DeltaSink, *, offer_picture_tool: bool = False) -> LlmAnswer:
        tools = offer_picture_tool and self._tools is not False
        # A model may write a call as text even when none was offered: it is held back either way.
        shown = ToolTextFilter(on_delta, TOOLS)
        try:
            try:
                completion = await self._client.stream(messages, shown, tools=[PICTURE_TOOL] if tools else ())
            except LlmRejected:
                if not tools:
                    raise
                self._tools = False
                tools = False
                shown = ToolTextFilter(on_delta, TOOLS)
                completion = await self._client.stream(messages, shown)
        except LlmError as exc:
            raise LlmUnavailable(str(exc)) from None
        if tools and self._tools is None:
            self._tools = True
        written = await shown.finish()
        for call in written.calls:
            TEXT_TOOL_CALLS.labels(call.name).inc()
        text = written.text
        calls = (*completion.tool_calls, *written.calls)
        picture = _picture_request(calls) if tools else None
        if not text and picture is None:
            raise LlmUnavailable("the LLM answered with no text" + (" (only a tool call)" if written.calls else ""))
        usage = completion.usage
        return LlmAnswer(text, usage.prompt_tokens, usage.completion_tokens, picture, usage_reported=usage.reported,
                         picture_basis=_picture_basis(calls) if picture is not None else None)

    async def wish(self, character_name: str, text: str) -> WishAnswer:
        """Does `text` wish for a picture of the character? One short call, read leniently."""
        try:
            completion = await self._client.complete(wish_messages(character_name, text), max_tokens=WISH_MAX_TOKENS)
        except LlmError as exc:
            raise LlmUnavailable(str(exc)) from None
        # A model that answers the question with a tool call has answered it too.
        wished = _picture_request(completion.tool_calls)
        wish = Wish(True, wished) if wished is not None else read_wish(completion.text)
        return WishAnswer(wish, completion.usage)


# The tool's `from` values, as the model is offered them, and the basis each names.
TOOL_BASES: dict[str, PictureBasis] = {"current_picture": "continue", "original_photo": "original",
                                       "previous_picture": "previous"}


def _picture_basis(calls: Iterable[ToolCall]) -> PictureBasis | None:
    """The `from` of the first `request_picture` call; None when missing or not one of the offered values."""
    for call in calls:
        if call.name == "request_picture":
            try:
                start = json.loads(call.arguments or "{}").get("from")
            except (ValueError, AttributeError):
                return None
            return TOOL_BASES.get(start) if isinstance(start, str) else None
    return None


def _picture_request(calls: Iterable[ToolCall]) -> str | None:
    for call in calls:
        if call.name != "request_picture":
            continue
        try:
            request = json.loads(call.arguments or "{}").get("request")
        except (ValueError, AttributeError):
            request = None
        # A call without a usable scene still means "a picture of me": the default scene serves.
        return request.strip() if isinstance(request, str) and request.strip() else ""
    return None
