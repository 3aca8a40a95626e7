"""The image edit API engine against the fake image API over real sockets, and its pure request/answer logic."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from PIL import Image

from contracts import RenderStep
from services.renderer.engine import Tick
from services.renderer.errors import BackendUnreachable, RenderError
from services.renderer.image_api_engine import (
    GPT_IMAGE_1_PRICES,
    ImageEditApiEngine,
    cost_usd,
    edit_prompt,
    failure,
    nearest_size,
    read_answer,
    request_hash,
)
from tests.conftest import REPO
from tests.fakes.comfyui import closed_url
from tests.fakes.image_api_server import Edit, Empty, ErrorReply, FakeImageApi, Hang
from tests.integration import renderer_jobs
from tests.integration.renderer_jobs import INPUT, png

pytestmark = pytest.mark.integration

KEY = "sk-test-key"


def job(**kw) -> RenderStep:
    """A render of INPUT at 512x768 with gpt-image-1; `kw` overrides any field."""
    return renderer_jobs.job(**{"height": 768, "model": "gpt-image-1", **kw})


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def api_engine(http: httpx.AsyncClient, url: str, *, deadline_s: float = 20.0, **kw) -> ImageEditApiEngine:
    return ImageEditApiEngine(http, base_url=url, api_key=KEY, deadline_s=deadline_s, **kw)


class Recorder:
    def __init__(self) -> None:
        self.updates: list = []

    async def __call__(self, update) -> None:
        self.updates.append(update)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- against the fake, over real sockets ---------------------------------------------------------


async def test_an_edit_returns_the_edited_image_its_cost_and_timings(http: httpx.AsyncClient) -> None:
    progress = Recorder()
    with FakeImageApi(api_key=KEY) as api:
        out = await api_engine(http, api.url).render(job(), INPUT, progress)
    image = opened(out.image)
    assert (out.media_type, image.format, image.size) == ("image/png", "PNG", (1024, 1536))
    assert image.convert("RGB").getpixel((10, 10)) == (245, 55, 225)  # the fake inverts the input
    assert (out.backend, out.engine) == (api.url, "openai-images")
    assert out.workflow_hash == request_hash("gpt-image-1", "on a beach", "1024x1536", None)
    # The fake's usage: 3 prompt words, one input image of 323 tokens, a medium portrait image of 1584.
    assert out.cost_usd == pytest.approx((3 * 5.0 + 323 * 10.0 + 1584 * 40.0) / 1e6)
    assert set(out.timings) == {"execute", "fetch", "total"} and out.timings["total"] >= out.timings["execute"] > 0
    assert progress.updates == [Tick(0, 1), Tick(1, 1)]


async def test_the_request_carries_the_instruction_what_to_avoid_the_size_and_the_picture(
        http: httpx.AsyncClient) -> None:
    with FakeImageApi(api_key=KEY) as api:
        await api_engine(http, api.url, quality="high").render(
            job(prompt="on a beach", negative_prompt="blurry, extra fingers", width=1024, height=640), INPUT,
            Recorder())
        await api_engine(http, api.url, size="1024x1024").render(job(width=512, height=768), INPUT, Recorder())
    landscape, fixed = api.requests
    assert landscape["fields"] == {"model": "gpt-image-1", "prompt": "on a beach\nAvoid: blurry, extra fingers",
                                   "n": "1", "size": "1536x1024", "output_format": "png", "quality": "high"}
    assert landscape["images"] == [{"field": "image", "filename": "input.png", "content_type": "image/png",
                                    "bytes": len(INPUT), "width": 96, "height": 80}]
    assert landscape["mask"] is None and landscape["authorized"]
    assert fixed["fields"]["size"] == "1024x1024" and "quality" not in fixed["fields"]


async def test_a_url_answer_is_fetched_and_without_usage_the_cost_is_unknown(http: httpx.AsyncClient) -> None:
    with FakeImageApi([Edit(url=True, usage=False, colour=(255, 0, 0))]) as api:
        out = await api_engine(http, api.url).render(job(), INPUT, Recorder())
        served = list(api.images.values())
    assert served == [(out.image, "image/png")] and opened(out.image).size == (1024, 1536)
    assert out.cost_usd is None and set(out.timings) == {"execute", "fetch", "total"}


async def test_an_expired_image_url_is_an_execution_failure_that_does_not_leak_the_signature(
        http: httpx.AsyncClient) -> None:
    with FakeImageApi([Edit(url=True, expired=True)]) as api:
        with pytest.raises(RenderError) as info:
            await api_engine(http, api.url).render(job(), INPUT, Recorder())
    assert (info.value.kind, info.value.backend) == ("execution", api.url)
    assert info.value.reason.startswith(f"cannot fetch the image at {api.url}/_fake/images/")
    assert info.value.reason.endswith(": HTTP 403") and "sig=" not in info.value.reason


async def test_an_input_that_is_not_a_picture_is_refused_before_any_request(http: httpx.AsyncClient) -> None:
    with FakeImageApi() as api:
        with pytest.raises(RenderError) as info:
            await api_engine(http, api.url).render(job(), b"GIF89a not really", Recorder())
    assert info.value.kind == "validation" and api.requests == []


@pytest.mark.parametrize(("reply", "says"), [
    (ErrorReply.rate_limited(20), "HTTP 429 rate_limit_exceeded from {url}: Rate limit reached for gpt-image-1"),
    (ErrorReply.server(500), "HTTP 500 server_error from {url}: The server had an error"),
    (ErrorReply.server(503), "HTTP 503 server_error from {url}: The engine is currently overloaded"),
    (ErrorReply(502, "Bad gateway"), "HTTP 502 server_error from {url}: Bad gateway"),
])
async def test_a_busy_or_failing_provider_is_unreachable_so_another_engine_may_take_the_job(
        http: httpx.AsyncClient, reply: ErrorReply, says: str) -> None:
    with FakeImageApi([reply]) as api:
        with pytest.raises(BackendUnreachable) as info:
            await api_engine(http, api.url).render(job(), INPUT, Recorder())
    error = info.value
    assert (error.kind, error.backend) == ("unreachable", api.url)
    assert error.reason.startswith(says.format(url=api.url)) and "\n" not in error.reason
    assert error.reason.endswith("(retry after 20 s)") == (reply.status == 429)


async def test_a_wrong_key_or_a_refused_connection_is_unreachable(http: httpx.AsyncClient) -> None:
    with FakeImageApi(api_key="sk-the-right-one") as api:
        with pytest.raises(BackendUnreachable) as wrong_key:
            await api_engine(http, api.url).render(job(), INPUT, Recorder())
    assert wrong_key.value.reason.startswith(f"HTTP 401 invalid_api_key from {api.url}: Incorrect API key provided")
    url = closed_url() + "/v1"
    with pytest.raises(BackendUnreachable) as refused:
        await api_engine(http, url).render(job(), INPUT, Recorder())
    assert refused.value.backend == url and refused.value.reason.startswith(f"cannot reach {url}: ConnectError")


async def test_a_moderation_block_is_a_validation_failure_not_retried_elsewhere(http: httpx.AsyncClient) -> None:
    progress = Recorder()
    with FakeImageApi([ErrorReply.moderation("violence")]) as api:
        with pytest.raises(RenderError) as info:
            await api_engine(http, api.url).render(job(), INPUT, progress)
    error = info.value
    assert not isinstance(error, BackendUnreachable) and (error.kind, error.backend) == ("validation", api.url)
    assert error.reason.startswith(f"HTTP 400 moderation_blocked from {api.url}: Your request was rejected by the "
                                   "safety system.") and "safety_violations=[violence]" in error.reason
    assert progress.updates == [Tick(0, 1)]


async def test_the_deadline_gives_a_timeout_and_the_job_deadline_can_shorten_it(http: httpx.AsyncClient) -> None:
    with FakeImageApi([Hang(), Hang()]) as api:
        with pytest.raises(RenderError) as engine_deadline:
            await api_engine(http, api.url, deadline_s=0.3).render(job(), INPUT, Recorder())
        with pytest.raises(RenderError) as job_deadline:
            await api_engine(http, api.url, deadline_s=60).render(job(deadline_s=0.3), INPUT, Recorder())
    for error in (engine_deadline.value, job_deadline.value):
        assert (error.kind, error.backend) == ("timeout", api.url) and "0.3 s" in error.reason


async def test_an_answer_without_an_image_is_an_execution_failure(http: httpx.AsyncClient) -> None:
    with FakeImageApi([Empty()]) as api:
        with pytest.raises(RenderError) as info:
            await api_engine(http, api.url).render(job(), INPUT, Recorder())
    assert (info.value.kind, info.value.backend) == ("execution", api.url)
    assert info.value.reason.startswith("the answer holds no image")


async def test_a_failing_progress_listener_does_not_fail_the_render(http: httpx.AsyncClient) -> None:
    async def broken(update) -> None:
        raise RuntimeError("listener down")

    with FakeImageApi() as api:
        out = await api_engine(http, api.url).render(job(), INPUT, broken)
    assert out.media_type == "image/png"


# -- the fake behaves like the real API (checked with the openai SDK as the reference client) ------


def test_the_fake_takes_what_the_openai_sdk_sends_and_answers_in_its_shape() -> None:
    with FakeImageApi(api_key=KEY) as api:
        client = openai.OpenAI(base_url=api.url, api_key=KEY, max_retries=0, timeout=10)
        answer = client.images.edit(model="gpt-image-1", prompt="make it red", size="1024x1024", quality="low",
                                    image=[("a.png", INPUT, "image/png"), ("b.png", png((0, 0, 0)), "image/png")])
        with pytest.raises(openai.BadRequestError) as refused:
            client.images.edit(model="gpt-image-1", prompt="x", image=("a.png", INPUT, "image/png"), size="512x512")
    assert opened(base64.b64decode(answer.data[0].b64_json)).size == (1024, 1024)
    assert answer.usage.output_tokens == 272 and answer.usage.input_tokens_details.image_tokens == 2 * 323
    assert [i["field"] for i in api.requests[0]["images"]] == ["image[]", "image[]"]
    assert refused.value.body["code"] == "invalid_value" and refused.value.body["param"] == "size"


@pytest.mark.parametrize(("form", "files", "status", "error"), [
    ({"model": "gpt-image-1", "prompt": "x", "size": "512x512"}, {"image": ("a.png", INPUT, "image/png")}, 400,
     {"message": "Invalid value: '512x512'. Supported values are: '1024x1024', '1536x1024', '1024x1536', and 'auto'.",
      "type": "invalid_request_error", "param": "size", "code": "invalid_value"}),
    ({"prompt": "x"}, {"model": (None, "gpt-image-1")}, 400,
     {"message": "Missing required parameter: 'image'.", "type": "invalid_request_error", "param": "image",
      "code": "missing_required_parameter"}),
    ({"model": "gpt-image-1", "prompt": "x"}, {"image": ("a", INPUT, "application/octet-stream")}, 400,
     {"message": "Invalid file 'image': unsupported mimetype ('application/octet-stream'). Supported file formats "
                 "are 'image/jpeg', 'image/png', and 'image/webp'.", "type": "invalid_request_error",
      "param": "image", "code": "unsupported_file_mimetype"}),
    ({"model": "gpt-image-1", "prompt": "x", "response_format": "b64_json"}, {"image": ("a.png", INPUT, "image/png")},
     400, {"message": "Unknown parameter: 'response_format'.", "type": "invalid_request_error",
           "param": "response_format", "code": "unknown_parameter"}),
])
def test_the_fake_refuses_what_the_real_api_refuses(form: dict, files: dict, status: int, error: dict) -> None:
    with FakeImageApi(api_key=KEY) as api:
        answer = httpx.post(f"{api.url}/images/edits", data=form, files=files,
                            headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        wrong_key = httpx.post(f"{api.url}/images/edits", data=form, files=files,
                               headers={"Authorization": "Bearer sk-nope"}, timeout=10)
    assert (answer.status_code, answer.json()) == (status, {"error": error})
    assert wrong_key.status_code == 401 and wrong_key.json()["error"]["code"] == "invalid_api_key"


def test_the_fake_runs_as_its_own_process(tmp_path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"replies": ["moderation", {"rate_limited": 7}], "default": "url"}))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.image_api_server", "--port", "0", "--script", str(script),
         "--record", str(tmp_path / "requests.jsonl")], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("fake-image-api listening on http://127.0.0.1:")
        url = line.split()[-1]
        answers = [httpx.post(f"{url}/images/edits", data={"model": "gpt-image-1", "prompt": "x"},
                              files={"image": ("a.png", INPUT, "image/png")}, timeout=10) for _ in range(3)]
        fetched = httpx.get(answers[2].json()["data"][0]["url"], timeout=10)
        recorded = httpx.get(url.removesuffix("/v1") + "/_fake/requests", timeout=10).json()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert [a.status_code for a in answers] == [400, 429, 200] and answers[1].headers["retry-after"] == "7"
    assert answers[0].json()["error"]["code"] == "moderation_blocked"
    assert fetched.headers["content-type"] == "image/png" and opened(fetched.content).size == (1024, 1024)
    assert len(recorded) == 3 and len((tmp_path / "requests.jsonl").read_text().splitlines()) == 3


# -- the pure request and answer logic ------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "size"), [
    (512, 512, "1024x1024"), (1024, 1024, "1024x1024"), (1100, 1000, "1024x1024"), (768, 512, "1536x1024"),
    (1920, 1080, "1536x1024"), (512, 768, "1024x1536"), (64, 8192, "1024x1536"), (896, 1152, "1024x1536"),
])
def test_the_size_is_the_api_size_nearest_the_jobs_shape(width: int, height: int, size: str) -> None:
    assert nearest_size(width, height) == size


def test_a_shape_halfway_between_square_and_landscape_goes_square() -> None:
    # sqrt(1.5) : 1 is as far (in log ratio) from 1:1 as from 3:2.
    assert nearest_size(12247, 10000) == "1024x1024" and nearest_size(12248, 10000) == "1536x1024"


def test_the_prompt_says_what_to_avoid_only_when_there_is_something() -> None:
    assert edit_prompt("on a beach", "") == "on a beach"
    assert edit_prompt(" on a beach ", " blurry ") == "on a beach\nAvoid: blurry"


def test_the_hash_is_the_same_for_the_same_request_only() -> None:
    one = request_hash("gpt-image-1", "on a beach", "1024x1024", None)
    assert one == request_hash("gpt-image-1", "on a beach", "1024x1024", None) and len(one) == 16
    assert len({one, request_hash("gpt-image-1", "on a beach", "1024x1024", "high"),
                request_hash("gpt-image-1", "on a beach", "1536x1024", None),
                request_hash("gpt-image-1.5", "on a beach", "1024x1024", None)}) == 4


def test_the_cost_prices_text_and_image_tokens_apart() -> None:
    usage = {"input_tokens": 1050, "output_tokens": 4160, "total_tokens": 5210,
             "input_tokens_details": {"text_tokens": 50, "image_tokens": 1000}}
    assert cost_usd(usage, GPT_IMAGE_1_PRICES) == pytest.approx(0.17665)  # 50*5 + 1000*10 + 4160*40, per 1M
    # No split reported: the input is priced as image tokens (an edit's input is mostly the picture).
    assert cost_usd({"input_tokens": 1050, "output_tokens": 0}, GPT_IMAGE_1_PRICES) == pytest.approx(0.0105)
    # Text output (newer models) is priced apart only when it has a price.
    with_text = {**usage, "output_tokens_details": {"text_tokens": 160, "image_tokens": 4000}}
    assert cost_usd(with_text, GPT_IMAGE_1_PRICES) == pytest.approx(0.17665)
    assert cost_usd(with_text, {**GPT_IMAGE_1_PRICES, "text_output": 10.0}) == pytest.approx(0.17185)
    assert cost_usd(None, GPT_IMAGE_1_PRICES) is None and cost_usd(usage, None) is None
    assert cost_usd({"input_tokens": 5}, GPT_IMAGE_1_PRICES) is None


async def test_prices_default_to_gpt_image_1_only_for_that_model(http: httpx.AsyncClient) -> None:
    assert ImageEditApiEngine(http, base_url="u", api_key="", deadline_s=1).prices == GPT_IMAGE_1_PRICES
    assert ImageEditApiEngine(http, base_url="u", api_key="", deadline_s=1, model="qwen-edit").prices is None
    assert ImageEditApiEngine(http, base_url="u", api_key="", deadline_s=1, model="m",
                              prices={"image_output": 8.0}).prices == {**GPT_IMAGE_1_PRICES, "image_output": 8.0}
    with pytest.raises(ValueError, match="unknown price keys"):
        ImageEditApiEngine(http, base_url="u", api_key="", deadline_s=1, prices={"output": 8.0})
    with pytest.raises(ValueError, match="size must be"):
        ImageEditApiEngine(http, base_url="u", api_key="", deadline_s=1, size="big")


def test_an_answer_gives_the_image_bytes_or_the_url_to_fetch() -> None:
    assert read_answer({"data": [{"b64_json": base64.b64encode(b"png").decode()}]}) == b"png"
    assert read_answer({"data": [{"url": "https://cdn.example/x.png?sig=1"}]}) == "https://cdn.example/x.png?sig=1"
    for body in ({"data": []}, {"created": 1}, "<html>oops</html>", {"data": [{"b64_json": "not base64!"}]},
                 {"error": {"message": "content filtered"}}):
        with pytest.raises(RenderError) as info:
            read_answer(body)
        assert info.value.kind == "execution"


@pytest.mark.parametrize(("status", "kind", "unreachable"), [
    (400, "validation", False), (413, "validation", False), (422, "validation", False), (401, "unreachable", True),
    (403, "unreachable", True), (404, "unreachable", True), (429, "unreachable", True), (500, "unreachable", True),
    (502, "unreachable", True), (503, "unreachable", True), (418, "execution", False),
])
def test_each_http_error_maps_onto_a_failure_kind(status: int, kind: str, unreachable: bool) -> None:
    error = failure(status, {"error": {"message": "said\nso", "type": "t", "code": "c"}}, None, "http://api")
    assert (error.kind, isinstance(error, BackendUnreachable)) == (kind, unreachable)
    assert error.reason == f"HTTP {status} c from http://api: said so" and error.backend == "http://api"
    assert failure(502, "<html>Bad Gateway</html>", "3", "http://api").reason == (
        "HTTP 502 from http://api: <html>Bad Gateway</html> (retry after 3 s)")
