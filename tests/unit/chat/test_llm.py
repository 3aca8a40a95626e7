"""The reply model over the shared LLM client against scripted HTTP (a mock transport of the SDK's own httpx
flavour, so the same tests run on openai 1.x-3.x): streaming, usage, the picture tool, failures."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from services.chat.errors import LlmUnavailable
from services.chat.llm import LlmAnswer, OpenAIReplyModel
from tests.fakes.chat_llm import ScriptedReplyModel
from services.runtime.llm import LlmSettings, Usage, sdk_httpx

httpx = sdk_httpx()

MESSAGES = [{"role": "system", "content": "You are Luna."}, {"role": "user", "content": "hi"}]


def chunk(delta: dict | None = None, *, finish: str | None = None, usage: dict | None = None) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "grok-3-mini",
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


def sse(*chunks: bytes) -> httpx.Response:
    return httpx.Response(200, content=b"".join(chunks) + b"data: [DONE]\n\n",
                          headers={"content-type": "text/event-stream"})


class Server:
    """Answers each request with the next scripted response and keeps the request bodies."""

    def __init__(self, *responses: httpx.Response | Callable[[], httpx.Response]) -> None:
        self.responses = list(responses)
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        response = self.responses.pop(0)
        return response() if callable(response) else response


def model(server: Server, **kw) -> OpenAIReplyModel:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    settings = LlmSettings(base_url="http://llm.test/v1", model="grok-3-mini", api_key="k", timeout_s=5, **kw)
    return OpenAIReplyModel.connect(settings, http_client=client)


async def collect(llm: OpenAIReplyModel, **kw) -> tuple[LlmAnswer, list[str]]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    return await llm.stream(MESSAGES, on_delta, **kw), deltas


async def test_streams_deltas_and_reports_usage() -> None:
    server = Server(sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Oh, "}),
                        chunk({"content": "hi..."}), chunk({}, finish="stop"),
                        chunk(usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})))
    answer, deltas = await collect(model(server, max_tokens=200, temperature=0.7))
    assert deltas == ["Oh, ", "hi..."]
    assert answer == LlmAnswer("Oh, hi...", 12, 3)
    (body,) = server.bodies
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == MESSAGES and body["max_tokens"] == 200 and body["temperature"] == 0.7
    assert "tools" not in body


async def test_without_usage_the_counts_are_estimated() -> None:
    answer, _ = await collect(model(Server(sse(chunk({"content": "Twelve chars"})))))
    assert answer.text == "Twelve chars" and not answer.usage_reported and answer.completion_tokens == 3


async def test_a_picture_tool_call_comes_back_as_the_scene() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "request_picture", "arguments": ""}}
    server = Server(sse(chunk({"role": "assistant", "tool_calls": [call]}),
                        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"request": "on a '}}]}),
                        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'mountain"}'}}]}),
                        chunk({}, finish="tool_calls")))
    answer, deltas = await collect(model(server), offer_picture_tool=True)
    assert answer.picture_request == "on a mountain" and answer.text == "" and deltas == []
    assert server.bodies[0]["tools"][0]["function"]["name"] == "request_picture"
    assert server.bodies[0]["tool_choice"] == "auto"


@pytest.mark.parametrize(("start", "basis"), [("previous_picture", "previous"), ("original_photo", "original"),
                                              ("current_picture", "continue"), ("the last one", None), (None, None)])
async def test_a_picture_tool_call_says_which_picture_it_edits(start: str | None, basis: str | None) -> None:
    arguments = {"request": "waving", **({"from": start} if start else {})}
    written = json.dumps({"name": "request_picture", "arguments": arguments})
    server = Server(sse(chunk({"content": f"Sure!\n{written}"}), chunk({}, finish="stop")))
    answer, _ = await collect(model(server), offer_picture_tool=True)
    assert answer.picture_request == "waving" and answer.picture_basis == basis
    offered = server.bodies[0]["tools"][0]["function"]["parameters"]["properties"]["from"]["enum"]
    assert offered == ["current_picture", "original_photo", "previous_picture"]


async def test_a_server_that_refuses_tools_is_asked_again_without_and_not_offered_them_again() -> None:
    refused = httpx.Response(400, json={"error": {"message": "tools are not supported", "type": "invalid_request"}})
    server = Server(refused, sse(chunk({"content": "Hello!"})), sse(chunk({"content": "Again!"})))
    llm = model(server)
    answer, _ = await collect(llm, offer_picture_tool=True)
    assert answer.text == "Hello!" and "tools" in server.bodies[0] and "tools" not in server.bodies[1]
    await collect(llm, offer_picture_tool=True)
    assert "tools" not in server.bodies[2]


@pytest.mark.parametrize(
    ("response", "says"),
    [
        (httpx.Response(503, json={"error": {"message": "overloaded", "type": "server"}}), "HTTP 503: overloaded"),
        (httpx.Response(401, json={"error": {"message": "bad key", "type": "auth"}}), "HTTP 401: bad key"),
        (sse(chunk({"content": ""}), chunk({}, finish="stop")), "no text"),
    ],
    ids=["503", "401", "empty"],
)
async def test_failures_are_llm_unavailable(response: httpx.Response, says: str) -> None:
    with pytest.raises(LlmUnavailable, match=says):
        await collect(model(Server(response)))


async def test_connection_errors_are_llm_unavailable() -> None:
    def refuse() -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(LlmUnavailable, match="cannot reach http://llm.test/v1"):
        await collect(model(Server(refuse)))


async def test_the_scripted_model_streams_its_script() -> None:
    fake = ScriptedReplyModel(["Hi there you", LlmUnavailable("down")], model="fake")
    answer, deltas = await collect(fake, offer_picture_tool=True)  # type: ignore[arg-type]
    assert deltas == ["Hi ", "there ", "you"] and answer.text == "Hi there you"
    assert fake.requests[0] == (MESSAGES, True)
    with pytest.raises(LlmUnavailable, match="down"):
        await collect(fake)  # type: ignore[arg-type]
    with pytest.raises(LlmUnavailable, match="no answer left"):
        await collect(fake)  # type: ignore[arg-type]


async def test_a_call_written_as_text_is_a_call_and_none_of_it_is_streamed() -> None:
    written = '<tool_call>\n{"name": "request_picture", "arguments": {"request": "in the snow"}}\n</tool_call>'
    pieces = ["Ooh, ", "okay!\n", *[written[i:i + 5] for i in range(0, len(written), 5)]]
    server = Server(sse(*(chunk({"content": piece}) for piece in pieces), chunk({}, finish="stop")))
    answer, deltas = await collect(model(server), offer_picture_tool=True)
    assert answer.picture_request == "in the snow" and answer.text == "Ooh, okay!"
    assert "".join(deltas).strip() == "Ooh, okay!"


async def test_a_written_call_when_no_tool_was_offered_is_hidden_and_not_a_call() -> None:
    server = Server(sse(chunk({"content": '{"name": "request_picture", "arguments": {"request": "x"}}\nHi!'})))
    answer, deltas = await collect(model(server))
    assert answer.picture_request is None and answer.text == "Hi!" and "".join(deltas) == "Hi!"


async def test_an_answer_that_is_only_an_unknown_written_call_is_no_answer() -> None:
    server = Server(sse(chunk({"content": '{"name": "web_search", "arguments": {"q": "x"}}'})))
    with pytest.raises(LlmUnavailable, match="no text"):
        await collect(model(server), offer_picture_tool=True)


async def test_the_wish_question_is_one_short_call_read_leniently() -> None:
    body = {"id": "c1", "object": "chat.completion", "created": 0, "model": "grok-3-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": 'Sure: {"picture": true, "scene": "in the snow"}'}}],
            "usage": {"prompt_tokens": 90, "completion_tokens": 9, "total_tokens": 99}}
    server = Server(httpx.Response(200, json=body))
    answer = await model(server).wish("Luna", "I wish I could see you in the snow")
    assert answer.wish.picture and answer.wish.scene == "in the snow"
    assert answer.usage == Usage(90, 9)
    (sent,) = server.bodies
    assert sent["max_tokens"] == 60 and "stream" not in sent and "tools" not in sent
    assert sent["messages"][-1] == {"role": "user", "content": "I wish I could see you in the snow"}
