"""The LLM behind the replies: a small `ReplyModel` protocol and its implementation over the shared client.

`OpenAIReplyModel` streams a chat completion from any OpenAI-compatible endpoint through
`services.runtime.llm.LlmClient`, hands each text delta to the caller as it arrives, and reports usage
and a `request_picture` tool call if the model made one. Every failure of the client is `LlmUnavailable`
here: the caller answers offline instead. A server that refuses the tool is asked again without it, and
not offered it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.chat.errors import LlmUnavailable
from services.chat.prompts import PICTURE_TOOL
from services.runtime.llm import DeltaSink, LlmClient, LlmError, LlmRejected, LlmSettings, ToolCall, estimate_tokens

__all__ = ["DeltaSink", "LlmAnswer", "OpenAIReplyModel", "ReplyModel", "estimate_tokens"]

Messages = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class LlmAnswer:
    """A whole streamed answer: its text, token usage, and the scene of a `request_picture` call if any."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    picture_request: str | None = None
    # False when the server sent no usage and the counts are estimates (about four characters a token).
    usage_reported: bool = True


class ReplyModel(Protocol):
    """Streams one reply; raises `LlmUnavailable` when there is none to be had."""

    model: str

    async def stream(self, messages: Messages, on_delta: DeltaSink, *, offer_picture_tool: bool = False) -> LlmAnswer:
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
        return cls(LlmClient(settings, http_client=http_client))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream(self, messages: Messages, on_delta: DeltaSink, *, offer_picture_tool: bool = False) -> LlmAnswer:
        tools = offer_picture_tool and self._tools is not False
        try:
            try:
                completion = await self._client.stream(messages, on_delta, tools=[PICTURE_TOOL] if tools else ())
            except LlmRejected:
                if not tools:
                    raise
                self._tools = False
                tools = False
                completion = await self._client.stream(messages, on_delta)
        except LlmError as exc:
            raise LlmUnavailable(str(exc)) from None
        if tools and self._tools is None:
            self._tools = True
        text, picture = completion.text.strip(), _picture_request(completion.tool_calls)
        if not text and picture is None:
            raise LlmUnavailable("the LLM answered with no text")
        usage = completion.usage
        return LlmAnswer(text, usage.prompt_tokens, usage.completion_tokens, picture, usage_reported=usage.reported)


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
