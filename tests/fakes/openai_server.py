"""A fake OpenAI-compatible server: real HTTP on a real socket, scripted answers, recorded requests.

In tests: `with FakeOpenAI([Reply.json(plan), "not json", Hang()]) as llm:` then point a client at
`llm.url` and read `llm.requests`. As a process (end-to-end tests):
`python -m tests.fakes.openai_server --port 0 --script script.json [--record requests.jsonl]`, which
prints `fake-openai listening on http://127.0.0.1:PORT/v1` once it accepts connections. A script is
{"replies": [reply, ...], "default": reply, "model": "fake-model", "json_schema": true}; a reply is
"text" | {"content": "text"} | {"json": {...}} | {"hang": seconds} | {"error": {"status": 500, "message": "..."}}
| {"tool_call": {"name": "...", "arguments": {...}}, "content": "optional text"};
"quirks": [...] and "first_token_delay_s" make it misbehave the way real servers do (see QUIRKS, MODES).
`GET /_fake/requests` lists what was received, `POST /_fake/replies` (a JSON list) queues more.
Speaks POST /v1/chat/completions (JSON, or SSE `data: {...}` chunks ending `data: [DONE]`, with usage
when `stream_options.include_usage` is set) and GET /v1/models, in OpenAI's wire shapes.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.threaded_server import (
    Hang,
    ScriptedServer,
    process_arguments,
    read_script,
)

__all__ = ["MODES", "QUIRKS", "ErrorReply", "FakeOpenAI", "Hang", "Reply", "ReplyLike", "create_app",
           "reply_from_json"]

# Each quirk is one way a real server was seen to misbehave (issue 11):
QUIRKS = frozenset({
    "json_schema_500",  # llama-cpp-python: HTTP 500 and a server traceback for response_format json_schema
    "no_json_schema",  # older vLLM / Ollama: HTTP 400 for json_schema
    "no_json_object",  # a bare server: HTTP 400 for any response_format
    "no_usage",  # llama.cpp-era servers: no usage, not even with stream_options.include_usage
    "one_at_a_time",  # llama-server with one slot: requests wait for each other
    "runaway",  # a small model that ignores the instructions and writes until max_tokens (or forever)
    "tools_as_text",  # Qwen on llama-server without --jinja: the call written into the content in <tool_call> tags
    "tools_as_json",  # llama-cpp-python's default chat format: the call written as a bare JSON object
    "no_tools",  # Ollama with a model whose template has no tools: HTTP 400 for any request with `tools`
})
# Named imitations of the servers the issue was tried against.
MODES: dict[str, frozenset[str]] = {
    "well-behaved": frozenset(),
    "llama-cpp-python": frozenset({"json_schema_500", "no_usage", "tools_as_json"}),
    "llama-server-1-slot": frozenset({"one_at_a_time", "no_usage", "tools_as_text"}),
    "bare": frozenset({"no_json_schema", "no_json_object", "no_usage"}),
}
# A runaway model without max_tokens stops here (the real one stopped at its context or the client's timeout).
_RUNAWAY_WORDS = 4000
_LLAMA_CPP_PYTHON_500 = (
    "Traceback (most recent call last):\n  File \"llama_cpp/server/app.py\", line 491, in create_chat_completion\n"
    "    response_format = body.response_format\nValueError: response_format json_schema is not supported by this "
    "chat handler")


@dataclass(frozen=True)
class Reply:
    """An assistant message with this content, and the tool calls it makes: (name, arguments JSON) each."""

    content: str
    finish_reason: str = "stop"
    tool_calls: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, value: Any) -> Reply:
        return cls(json.dumps(value))

    @classmethod
    def tool(cls, name: str, arguments: dict[str, Any], content: str = "") -> Reply:
        """A call of tool `name`, after `content` if any; a server with a tools quirk writes it as text."""
        return cls(content, "tool_calls", ((name, json.dumps(arguments)),))


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error with OpenAI's error body."""

    status: int
    message: str
    type: str = "server_error"
    code: str | None = None


ReplyLike = Reply | Hang | ErrorReply | str
Responder = Callable[[dict[str, Any]], ReplyLike]


def reply_from_json(value: Any) -> ReplyLike:
    """A reply from its script-file form."""
    match value:
        case str():
            return Reply(value)
        case {"tool_call": {"name": str(name), **call}}:
            return Reply.tool(name, call.get("arguments") or {}, value.get("content", ""))
        case {"content": str(content)}:
            return Reply(content, value.get("finish_reason", "stop"))
        case {"json": document}:
            return Reply.json(document)
        case {"hang": seconds}:
            return Hang(float(seconds))
        case {"error": dict(error)}:
            return ErrorReply(int(error.get("status", 500)), error.get("message", "scripted error"),
                              error.get("type", "server_error"), error.get("code"))
    raise ValueError(f"not a reply: {value!r}")


class FakeOpenAI(ScriptedServer[ReplyLike]):
    """The fake server: replies queued or computed, requests recorded; run in a thread as a context manager.

    `requests`: the JSON bodies of the chat completion requests received so far.
    """

    name = "fake-openai"

    def __init__(self, replies: Iterable[ReplyLike] = (), *, responder: Responder | None = None,
                 default: ReplyLike | None = None, model: str = "fake-model", json_schema: bool = True,
                 api_key: str | None = None, record: Path | None = None, host: str = "127.0.0.1",
                 port: int = 0, quirks: Iterable[str] = (), mode: str = "well-behaved",
                 first_token_delay_s: float = 0.0) -> None:
        super().__init__(replies, host=host, port=port, record=record)
        self.quirks = frozenset(quirks) | MODES[mode] | (frozenset() if json_schema else {"no_json_schema"})
        if unknown := self.quirks - QUIRKS:
            raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}")
        self.first_token_delay_s = first_token_delay_s
        self.responder, self.default = responder, default
        self.model, self.json_schema, self.api_key = model, json_schema, api_key

    @property
    def url(self) -> str:
        """The base URL an OpenAI client takes (ends in /v1)."""
        return f"{self.base}/v1"

    def next_reply(self, body: dict[str, Any]) -> Reply | Hang | ErrorReply:
        """The next queued reply, else the responder's, else the default, else an error that says so."""
        with self.lock:
            reply = self.replies.popleft() if self.replies else None
        if reply is None and self.responder is not None:
            reply = self.responder(body)
        reply = reply if reply is not None else self.default
        if reply is None:
            return ErrorReply(500, "fake openai: no scripted reply left")
        return Reply(reply) if isinstance(reply, str) else reply

    def app(self) -> FastAPI:
        return create_app(self)


def _error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
           code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status)


def create_app(fake: FakeOpenAI) -> FastAPI:
    """The fake's HTTP app."""
    app = FastAPI(title="fake OpenAI-compatible server")
    slot = asyncio.Lock()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": fake.model, "object": "model", "created": 0, "owned_by": "fake"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        if fake.api_key is not None and request.headers.get("authorization") != f"Bearer {fake.api_key}":
            return _error(401, "Incorrect API key provided", code="invalid_api_key")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        fake.log(body)
        if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "'model' and a non-empty 'messages' are required", param="messages")
        if (refused := _format_refusal(fake.quirks, body.get("response_format"))) is not None:
            return refused
        if body.get("tools") and "no_tools" in fake.quirks:
            return _error(400, f"registry.ollama.ai/library/{body['model']} does not support tools")
        if "one_at_a_time" in fake.quirks:
            async with slot:  # one slot: the next request waits for this whole answer
                return await _answer(fake, request, body)
        return await _answer(fake, request, body)

    fake.add_fake_routes(app, reply_from_json)
    return app


def _format_refusal(quirks: frozenset[str], response_format: Any) -> Response | None:
    kind = (response_format or {}).get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema" and "json_schema_500" in quirks:
        return _error(500, _LLAMA_CPP_PYTHON_500, "server_error")
    if kind == "json_schema" and "no_json_schema" in quirks:
        return _error(400, "response_format of type json_schema is not supported", param="response_format")
    if kind in ("json_schema", "json_object") and "no_json_object" in quirks:
        return _error(400, f"response_format of type {kind} is not supported", param="response_format")
    return None


async def _answer(fake: FakeOpenAI, request: Request, body: dict[str, Any]) -> Response:
    reply = fake.next_reply(body)
    if isinstance(reply, Hang):
        await fake.hang(request, reply.seconds)
        return _error(504, "fake openai: hung as scripted", "server_error")
    if isinstance(reply, ErrorReply):
        return _error(reply.status, reply.message, reply.type, code=reply.code)
    reply = _tools_written(_bounded(reply, body.get("max_tokens") or body.get("max_completion_tokens"),
                                    "runaway" in fake.quirks), fake.quirks)
    if fake.first_token_delay_s:
        await fake.hang(request, fake.first_token_delay_s)  # prompt processing on a slow machine
    # Words stand in for tokens: the shape matters to clients, not the count.
    prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"] if isinstance(m, dict))
    completion = len(reply.content.split())
    usage = None if "no_usage" in fake.quirks else {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": body["model"],
            "system_fingerprint": "fp_fake"}
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_chunks(head, reply, usage if include_usage else None),
                                 media_type="text/event-stream")
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [{"id": f"call_{index}", "type": "function",
                                  "function": {"name": name, "arguments": arguments}}
                                 for index, (name, arguments) in enumerate(reply.tool_calls)]
    return JSONResponse({**head, "object": "chat.completion", "usage": usage, "choices": [
        {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}]})


def _tools_written(reply: Reply, quirks: frozenset[str]) -> Reply:
    """A server without a tool-call parser hands the model's call over as text, in the model's own format."""
    if not reply.tool_calls or not quirks & {"tools_as_text", "tools_as_json"}:
        return reply
    written = []
    for name, arguments in reply.tool_calls:
        call = json.dumps({"name": name, "arguments": json.loads(arguments)})
        written.append(f"<tool_call>\n{call}\n</tool_call>" if "tools_as_text" in quirks else call)
    return Reply("\n".join(part for part in (reply.content, *written) if part), "stop")


def _bounded(reply: Reply, max_tokens: Any, runaway: bool) -> Reply:
    """The reply as a real server sends it: cut at max_tokens (finish "length"); a runaway model writes on."""
    words = reply.content.split(" ")
    if runaway:
        words = (words * (_RUNAWAY_WORDS // max(1, len(words)) + 1))[:_RUNAWAY_WORDS]
    if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
        return Reply(" ".join(words[:max_tokens]), "length")
    return Reply(" ".join(words), "length" if runaway else reply.finish_reason, reply.tool_calls)


async def _chunks(head: dict[str, Any], reply: Reply, usage: dict[str, int] | None) -> AsyncIterator[bytes]:
    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
        if usage is not None:
            chunk.setdefault("usage", None)
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    yield event(delta({"role": "assistant", "content": ""}))
    words = reply.content.split(" ") if reply.content else []
    for index, word in enumerate(words):
        yield event(delta({"content": word if index == len(words) - 1 else word + " "}))
    for index, (name, arguments) in enumerate(reply.tool_calls):
        # As OpenAI streams a call: id and name first, then the arguments' JSON in fragments.
        yield event(delta({"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function",
                                           "function": {"name": name, "arguments": ""}}]}))
        for start in range(0, len(arguments), 8):
            yield event(delta({"tool_calls": [{"index": index, "function": {"arguments": arguments[start:start + 8]}}]}))
    yield event(delta({}, reply.finish_reason))
    if usage is not None:
        yield event([], usage=usage)
    yield b"data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    """Run the fake as a process until SIGINT/SIGTERM."""
    parser = process_arguments("tests.fakes.openai_server", __doc__, "JSON file of scripted replies")
    parser.add_argument("--record", type=Path, help="append each request body to this JSONL file")
    parser.add_argument("--api-key", help="require this bearer key")
    args = parser.parse_args(argv)
    script = read_script(args.script)
    default = script.get("default")
    FakeOpenAI([reply_from_json(r) for r in script.get("replies", [])],
               default=None if default is None else reply_from_json(default), model=script.get("model", "fake-model"),
               json_schema=script.get("json_schema", True), api_key=args.api_key, record=args.record,
               quirks=script.get("quirks", ()), mode=script.get("mode", "well-behaved"),
               first_token_delay_s=float(script.get("first_token_delay_s", 0.0)),
               host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
