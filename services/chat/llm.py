"""The LLM behind the replies: a small `ReplyModel` protocol, its openai SDK implementation and a fake.

`OpenAIReplyModel` streams a chat completion from any OpenAI-compatible endpoint (OpenAI, xAI Grok,
Ollama, vLLM, llama.cpp), hands each text delta to the caller as it arrives, and reports usage and
a `request_picture` tool call if the model made one. Every failure (timeout, connection, HTTP error,
an empty answer) is `LlmUnavailable`: the caller answers offline instead. A server that refuses the
tool is asked again without it, and not offered it again.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import openai

from services.chat.errors import LlmUnavailable
from services.chat.prompts import PICTURE_TOOL

__all__ = ["DeltaSink", "LlmAnswer", "OpenAIReplyModel", "ReplyModel", "ScriptedReplyModel", "estimate_tokens"]

DeltaSink = Callable[[str], Awaitable[None]]
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


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text) / 4)) if text else 0


class OpenAIReplyModel:
    """`ReplyModel` over `openai.AsyncOpenAI` with streaming; no SDK retries (the offline persona is the retry)."""

    def __init__(self, client: openai.AsyncOpenAI, *, model: str, timeout_s: float, max_tokens: int | None = None,
                 temperature: float | None = None) -> None:
        self.model = model
        self._client = client
        self._timeout_s = timeout_s
        self._max_tokens = max_tokens
        self._temperature = temperature
        # None until known; False once the server refused the tool.
        self._tools: bool | None = None

    @classmethod
    def connect(cls, *, base_url: str, model: str, api_key: str, timeout_s: float, max_tokens: int | None = None,
                temperature: float | None = None, http_client: httpx.AsyncClient | None = None) -> OpenAIReplyModel:
        timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout,
                                    max_retries=0, http_client=http_client)
        return cls(client, model=model, timeout_s=timeout_s, max_tokens=max_tokens, temperature=temperature)

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, messages: Messages, on_delta: DeltaSink, *, offer_picture_tool: bool = False) -> LlmAnswer:
        tools = offer_picture_tool and self._tools is not False
        try:
            # The SDK timeout bounds each read; this bounds the whole answer, slow trickles included.
            async with asyncio.timeout(self._timeout_s):
                try:
                    return await self._stream(messages, on_delta, tools)
                except _ToolRefused:
                    self._tools = False
                    return await self._stream(messages, on_delta, False)
        except (TimeoutError, openai.APITimeoutError):
            raise LlmUnavailable(f"no answer within {self._timeout_s:g}s") from None
        except openai.APIConnectionError as exc:
            raise LlmUnavailable(f"cannot reach the LLM: {exc}") from None
        except openai.APIStatusError as exc:
            detail = exc.body.get("message") if isinstance(exc.body, dict) else None
            raise LlmUnavailable(f"HTTP {exc.status_code}: {detail or exc.message}") from None
        except openai.OpenAIError as exc:
            raise LlmUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def _stream(self, messages: Messages, on_delta: DeltaSink, tools: bool) -> LlmAnswer:
        options: dict[str, Any] = {"stream_options": {"include_usage": True}}
        if self._max_tokens is not None:
            options["max_tokens"] = self._max_tokens
        if self._temperature is not None:
            options["temperature"] = self._temperature
        if tools:
            options.update(tools=[PICTURE_TOOL], tool_choice="auto")
        try:
            response = await self._client.chat.completions.create(
                model=self.model, messages=list(messages), stream=True, **options)
        except openai.APIStatusError as exc:
            if tools and exc.status_code in (400, 422):
                raise _ToolRefused from None
            raise
        parts: list[str] = []
        calls: dict[int, list[str]] = {}
        usage = None
        async with response:
            async for chunk in response:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                        await on_delta(choice.delta.content)
                    for call in choice.delta.tool_calls or ():
                        # A call arrives in pieces: the name first, then the arguments JSON a fragment at a time.
                        pieces = calls.setdefault(call.index, ["", ""])
                        if call.function is not None:
                            pieces[0] += call.function.name or ""
                            pieces[1] += call.function.arguments or ""
        text = "".join(parts).strip()
        picture = _picture_request(calls.values())
        if not text and picture is None:
            raise LlmUnavailable("the LLM answered with no text")
        if self._tools is None and tools:
            self._tools = True
        if usage is None:
            prompt = sum(estimate_tokens(str(m.get("content") or "")) for m in messages)
            return LlmAnswer(text, prompt, estimate_tokens(text), picture, usage_reported=False)
        return LlmAnswer(text, usage.prompt_tokens or 0, usage.completion_tokens or 0, picture)


def _picture_request(calls: Iterable[list[str]]) -> str | None:
    for name, arguments in calls:
        if name != "request_picture":
            continue
        try:
            request = json.loads(arguments or "{}").get("request")
        except (ValueError, AttributeError):
            request = None
        # A call without a usable scene still means "a picture of me": the default scene serves.
        return request.strip() if isinstance(request, str) and request.strip() else ""
    return None


class _ToolRefused(Exception):
    """The server answered 400/422 to a request that offered a tool."""


class ScriptedReplyModel:
    """In-tree fake `ReplyModel`: answers from a script (text, `LlmAnswer` or an exception), records requests."""

    def __init__(self, answers: Iterable[str | LlmAnswer | Exception] = (), *, model: str = "scripted",
                 default: str | None = None) -> None:
        self.model = model
        self.answers: deque[str | LlmAnswer | Exception] = deque(answers)
        self.default = default
        self.requests: list[tuple[list[dict[str, Any]], bool]] = []
        self.closed = False

    async def stream(self, messages: Messages, on_delta: DeltaSink, *, offer_picture_tool: bool = False) -> LlmAnswer:
        self.requests.append(([dict(m) for m in messages], offer_picture_tool))
        answer = self.answers.popleft() if self.answers else self.default
        if answer is None:
            raise LlmUnavailable("scripted model: no answer left")
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, str):
            answer = LlmAnswer(answer, sum(estimate_tokens(str(m.get("content", ""))) for m in messages),
                               estimate_tokens(answer))
        words = answer.text.split(" ")
        for index, word in enumerate(words):
            await on_delta(word if index == len(words) - 1 else word + " ")
        return answer

    async def aclose(self) -> None:
        self.closed = True
