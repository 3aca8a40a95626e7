"""One client for OpenAI-compatible servers (OpenAI, xAI Grok, Ollama, vLLM, llama.cpp), shared by chat and planner.

    client = LlmClient(LlmSettings(base_url=..., model=..., timeout_s=30))
    answer = await client.complete(messages, response_format={"type": "json_object"})
    answer = await client.stream(messages, on_delta, tools=[...])      # text deltas as they arrive

It works with every openai SDK from 1.55.3 (the first that runs on httpx 0.28) to 3.x: openai 3 runs on httpx2 instead of httpx and refuses an
`httpx.Timeout`, so timeouts are given as `openai.Timeout`, which each SDK exports in its own flavour.
The SDK never retries on its own (max_retries=0): a retry costs the caller's deadline, so callers decide.

Every failure is one of these (callers that only need "no answer" catch `LlmError`):

    LlmError                the call produced nothing usable
    ├── LlmUnavailable      no answer: timeout, connection refused or reset, HTTP 401/403/404/429/5xx
    │   └── LlmRejected     HTTP 400/422: the server refused the request as made (a tool, a response
    │                       format, a parameter it lacks); the same call without it may succeed
    └── LlmEmptyAnswer      the server answered, but with no text and no tool call (or a refusal)
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import openai
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.runtime import tracing
from services.runtime.metrics import LLM_REQUESTS, LLM_SECONDS, label_value

__all__ = [
    "Completion", "DeltaSink", "LlmClient", "LlmEmptyAnswer", "LlmError", "LlmRejected", "LlmSettings",
    "LlmUnavailable", "Messages", "ToolCall", "Usage", "estimate_tokens", "sdk_httpx",
]

Messages = Sequence[Mapping[str, Any]]
DeltaSink = Callable[[str], Awaitable[None]]

# Connecting is quick or not at all: a dead host should not eat the whole answer's deadline.
_CONNECT_TIMEOUT_S = 5.0


class LlmSettings(BaseModel):
    """Where the server is and how to ask it; each service fills it from its own settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    # Local servers (Ollama, llama.cpp) ignore the key, but the SDK insists on one.
    api_key: str = "not-needed"
    # The whole answer, streamed or not, must arrive within this.
    timeout_s: float = Field(default=30.0, gt=0)
    # None leaves the server's default: some models (OpenAI reasoning models) reject any other value.
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    # Sampling seed, for servers that honour it (OpenAI, llama.cpp, vLLM): the same prompt, the same answer.
    seed: int | None = None

    @field_validator("api_key")
    @classmethod
    def _placeholder_for_blank(cls, key: str) -> str:
        return key or "not-needed"


class LlmError(Exception):
    """Root of every failure of a call to an OpenAI-compatible server."""


class LlmUnavailable(LlmError):
    """No answer: the server timed out, could not be reached or answered an HTTP error."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LlmRejected(LlmUnavailable):
    """HTTP 400/422: the server refused the request as made; without the tool or format it may answer."""


class LlmEmptyAnswer(LlmError):
    """The server answered with no text and no tool call; `refusal` is the model's refusal, if it gave one."""

    def __init__(self, message: str, *, refusal: str | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal


@dataclass(frozen=True)
class Usage:
    """Token counts; `reported` is False when the server sent none and these are estimates."""

    prompt_tokens: int
    completion_tokens: int
    reported: bool = True


@dataclass(frozen=True)
class ToolCall:
    """A function call the model made: its name and its arguments as the JSON text it wrote."""

    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    """A whole answer: its text, the tool calls it made, and what it cost in tokens."""

    text: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


def estimate_tokens(text: str) -> int:
    """About four characters a token: the usual rule for English text when a server reports no usage."""
    return max(1, round(len(text) / 4)) if text else 0


def sdk_httpx() -> ModuleType:
    """The httpx flavour the installed SDK speaks (httpx before openai 3, httpx2 since), for own transports."""
    base = next(c for c in openai.DefaultAsyncHttpxClient.__mro__ if not c.__module__.startswith("openai"))
    return importlib.import_module(base.__module__.split(".")[0])


class LlmClient:
    """Chat completions, whole or streamed, against one server and model; see the module docstring."""

    def __init__(self, settings: LlmSettings, *, http_client: Any = None, purpose: str = "llm") -> None:
        """`http_client` (tests): an `AsyncClient` of `sdk_httpx()`, e.g. over a mock transport; `purpose`
        ("chat", "plan") labels this client's calls in the metrics."""
        self.settings = settings
        self.purpose = purpose
        timeout = openai.Timeout(settings.timeout_s, connect=min(_CONNECT_TIMEOUT_S, settings.timeout_s))
        self._sdk = openai.AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key, timeout=timeout,
                                       max_retries=0, http_client=http_client)

    @property
    def model(self) -> str:
        return self.settings.model

    async def aclose(self) -> None:
        await self._sdk.close()

    async def complete(self, messages: Messages, *, response_format: Mapping[str, Any] | None = None,
                       tools: Sequence[Mapping[str, Any]] = (), max_tokens: int | None = None) -> Completion:
        """One answer, whole. Raises `LlmEmptyAnswer` when it has neither text nor a tool call."""
        options = self._options(response_format, tools, max_tokens)
        async with self._measured():
            async with self._errors_mapped():
                response = await self._sdk.chat.completions.create(
                    model=self.settings.model, messages=list(messages), **options)
            choice = response.choices[0] if response.choices else None
            message = choice.message if choice is not None else None
            text = (message.content or "") if message is not None else ""
            calls = tuple(ToolCall(call.function.name or "", call.function.arguments or "")
                          for call in (getattr(message, "tool_calls", None) or ()) if call.function is not None)
            if not text.strip() and not calls:
                refusal = getattr(message, "refusal", None)
                raise LlmEmptyAnswer(f"refused: {refusal}" if refusal else "empty answer", refusal=refusal)
        usage = response.usage
        return Completion(text, _usage(usage, messages, text), calls, choice.finish_reason if choice else None)

    async def stream(self, messages: Messages, on_delta: DeltaSink, *,
                     tools: Sequence[Mapping[str, Any]] = (), max_tokens: int | None = None) -> Completion:
        """One answer, streamed: each text delta goes to `on_delta` as it arrives; the whole comes back."""
        options = self._options(None, tools, max_tokens)
        options["stream_options"] = {"include_usage": True}
        parts: list[str] = []
        # A call arrives in pieces: the name first, then the arguments' JSON a fragment at a time.
        calls: dict[int, list[str]] = {}
        usage = None
        finish = None
        async with self._measured():
            async with self._errors_mapped():
                response = await self._sdk.chat.completions.create(
                    model=self.settings.model, messages=list(messages), stream=True, **options)
                async with response:
                    async for chunk in response:
                        if chunk.usage is not None:
                            usage = chunk.usage
                        for choice in chunk.choices:
                            finish = choice.finish_reason or finish
                            if choice.delta.content:
                                parts.append(choice.delta.content)
                                await on_delta(choice.delta.content)
                            for call in choice.delta.tool_calls or ():
                                pieces = calls.setdefault(call.index, ["", ""])
                                if call.function is not None:
                                    pieces[0] += call.function.name or ""
                                    pieces[1] += call.function.arguments or ""
            text = "".join(parts)
            tool_calls = tuple(ToolCall(name, arguments) for name, arguments in calls.values())
            if not text.strip() and not tool_calls:
                raise LlmEmptyAnswer("the LLM answered with no text")
        return Completion(text, _usage(usage, messages, text), tool_calls, finish)

    def _options(self, response_format: Mapping[str, Any] | None, tools: Sequence[Mapping[str, Any]],
                 max_tokens: int | None) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if response_format is not None:
            options["response_format"] = dict(response_format)
        if tools:
            options.update(tools=list(tools), tool_choice="auto")
        limit = max_tokens if max_tokens is not None else self.settings.max_tokens
        if limit is not None:
            options["max_tokens"] = limit
        if self.settings.temperature is not None:
            options["temperature"] = self.settings.temperature
        if self.settings.seed is not None:
            options["seed"] = self.settings.seed
        return options

    @asynccontextmanager
    async def _measured(self) -> AsyncIterator[None]:
        """Time the call and count it by outcome; errors other than `LlmError` (a failing delta sink) are
        the caller's, not the server's, and are timed but not counted."""
        model = label_value(self.settings.model)
        began = time.monotonic()
        try:
            yield
        except LlmError as exc:
            LLM_REQUESTS.labels(self.purpose, model, _outcome(exc)).inc()
            raise
        finally:
            LLM_SECONDS.labels(self.purpose, model).observe(time.monotonic() - began)
        LLM_REQUESTS.labels(self.purpose, model, "ok").inc()

    @asynccontextmanager
    async def _errors_mapped(self) -> AsyncIterator[None]:
        """The SDK's exceptions (and our own deadline) as the module's tree, with a one-line reason."""
        timeout_s = self.settings.timeout_s
        try:
            # The SDK's timeout bounds each read; this bounds the whole answer, slow trickles included.
            with tracing.span(f"chat {self.settings.model}", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": self.settings.model,
                    "server.address": self.settings.base_url}):
                async with asyncio.timeout(timeout_s):
                    yield
        except (TimeoutError, openai.APITimeoutError):
            raise LlmUnavailable(f"no answer within {timeout_s:g}s") from None
        except openai.APIConnectionError as exc:
            raise LlmUnavailable(f"cannot reach {self.settings.base_url}: {exc}") from None
        except openai.APIStatusError as exc:
            kind = LlmRejected if exc.status_code in (400, 422) else LlmUnavailable
            raise kind(f"HTTP {exc.status_code}: {_first_line(_detail(exc))}", status_code=exc.status_code) from None
        except openai.OpenAIError as exc:
            raise LlmUnavailable(f"{type(exc).__name__}: {_first_line(str(exc))}") from None


def _outcome(exc: LlmError) -> str:
    if isinstance(exc, LlmRejected):
        return "rejected"
    return "empty" if isinstance(exc, LlmEmptyAnswer) else "unavailable"


def _usage(usage: Any, messages: Messages, text: str) -> Usage:
    if usage is None:
        prompt = sum(estimate_tokens(str(message.get("content") or "")) for message in messages)
        return Usage(prompt, estimate_tokens(text), reported=False)
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(error.get("message"), str):
            return error["message"]
    return exc.message


def _first_line(text: str, limit: int = 300) -> str:
    """Servers put whole tracebacks in error messages; a log line or an event note gets one line: the first,
    or of a Python traceback the last (the exception), which is the one that says what went wrong."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1] if lines[0].startswith("Traceback (most recent call last)") else lines[0]
    return line if len(line) <= limit else line[:limit] + "..."
