"""The RunPod engine against the fake RunPod serverless endpoint (worker-comfyui) over real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from services.renderer.engine import Tick
from services.renderer.errors import BackendUnreachable, RenderError
from services.renderer.runpod_engine import RunPodEngine
from services.renderer.templates import TemplateLibrary
from tests.fakes.comfyui import closed_url
from tests.fakes.runpod_server import FakeRunPod, JobScript
from tests.integration.renderer_jobs import INPUT, job

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INPUT_NAME = f"{hashlib.sha256(INPUT).hexdigest()}.png"


def colour_of(image: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(image)) as opened:
        return opened.convert("RGB").getpixel((0, 0))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def engine(http: httpx.AsyncClient, url: str, *, api_key: str = "fake-key", deadline_s: float = 20.0) -> RunPodEngine:
    return RunPodEngine(TemplateLibrary.load(), http, endpoint_url=url, api_key=api_key, deadline_s=deadline_s,
                        poll_interval_s=0.05, request_timeout_s=5.0)


class Recorder:
    def __init__(self, on_tick=None) -> None:
        self.updates: list = []
        self.on_tick = on_tick

    async def __call__(self, update) -> None:
        self.updates.append(update)
        if self.on_tick is not None:
            self.on_tick(update)

    @property
    def ticks(self) -> list[Tick]:
        return [u for u in self.updates if isinstance(u, Tick)]


async def test_a_render_returns_the_workers_image_with_its_timings(http: httpx.AsyncClient) -> None:
    with FakeRunPod([JobScript(queue_s=0.2, run_s=0.3)]) as runpod:
        out = await engine(http, runpod.url).render(job(), INPUT, Recorder())
        (job_id,) = runpod.jobs
    assert out.image == runpod.outputs[job_id] and colour_of(out.image) == (245, 55, 225)  # the input, inverted
    assert (out.media_type, out.engine, out.backend, out.cost_usd) == ("image/png", "runpod", runpod.url, None)
    assert len(out.workflow_hash) == 64
    assert out.timings["queue"] == 200 and out.timings["execute"] == 300
    assert out.timings["total"] >= out.timings["submit"] > 0


async def test_the_input_image_is_sent_under_the_name_the_load_image_node_uses(http: httpx.AsyncClient) -> None:
    with FakeRunPod() as runpod:
        await engine(http, runpod.url, deadline_s=30).render(job(), INPUT, Recorder())
    (run,) = runpod.runs
    assert run.images == {INPUT_NAME: INPUT}  # no subfolder: worker-comfyui uploads it by this name
    assert run.workflow["3"]["inputs"]["image"] == INPUT_NAME and run.workflow["8"]["inputs"]["seed"] == 7
    assert run.authorization == "Bearer fake-key" and run.policy == {"executionTimeout": 30_000}


async def test_a_text_to_image_job_sends_no_images(http: httpx.AsyncClient) -> None:
    with FakeRunPod() as runpod:
        out = await engine(http, runpod.url).render(job(template="sdxl_t2i", model="sdxl"), INPUT, Recorder())
    assert runpod.runs[0].images == {} and colour_of(out.image) == (128, 128, 128)


async def test_progress_ticks_when_the_job_starts_and_when_it_completes(http: httpx.AsyncClient) -> None:
    seen: list[str] = []
    with FakeRunPod([JobScript(queue_s=0.3, run_s=0.4)]) as runpod:
        progress = Recorder(on_tick=lambda tick: seen.append(runpod.status(next(iter(runpod.jobs)))["status"]))
        await engine(http, runpod.url).render(job(), INPUT, progress)
    assert progress.ticks == [Tick(0, 1), Tick(1, 1)]
    assert seen == ["IN_PROGRESS", "COMPLETED"]  # the first tick came while the worker ran, not while queued


@pytest.mark.parametrize(("script", "kind", "reason"), [
    (JobScript(outcome="failed", error="Workflow validation failed:\n• Node 4 (errors): ckpt not in list"),
     "execution", "Workflow validation failed: • Node 4 (errors): ckpt not in list"),
    (JobScript(outcome="failed", error="Job processing failed", details=("Failed to fetch image data",)),
     "execution", "Job processing failed; Failed to fetch image data"),
    (JobScript(outcome="failed", error="CUDA error: out of memory", crash=True), "execution",
     "CUDA error: out of memory"),
    (JobScript(run_s=0.1, outcome="timed_out"), "timeout", "RunPod timed job"),
    (JobScript(queue_s=0.1, outcome="cancelled"), "interrupted", "was cancelled"),
    (JobScript(output="no_images"), "execution", "the workflow produced no image"),
    (JobScript(output="bad_base64"), "execution", "is not valid base64"),
], ids=["failed", "failed-details", "handler-crash", "timed-out", "cancelled", "no-images", "bad-base64"])
async def test_a_job_that_ends_without_an_image_fails_with_the_right_kind(
        http: httpx.AsyncClient, script: JobScript, kind: str, reason: str) -> None:
    with FakeRunPod([script]) as runpod, pytest.raises(RenderError) as info:
        await engine(http, runpod.url).render(job(), INPUT, Recorder())
    error = info.value
    assert not isinstance(error, BackendUnreachable)
    assert (error.kind, error.backend) == (kind, runpod.url) and reason in error.reason and "\n" not in error.reason
    assert runpod.cancels == []  # it ended by itself: nothing to cancel


@pytest.mark.parametrize("form", ["s3", "legacy", "legacy_url", "extra_image"])
async def test_every_output_form_of_worker_comfyui_is_read(http: httpx.AsyncClient, form: str) -> None:
    with FakeRunPod([JobScript(output=form)]) as runpod:
        out = await engine(http, runpod.url).render(job(), INPUT, Recorder())
    # The fake's bucket refuses a request carrying our RunPod key, as S3 does with a presigned URL.
    assert colour_of(out.image) == (245, 55, 225) and out.media_type == "image/png"


@pytest.mark.parametrize(("script", "said"), [
    (JobScript(run_http=429, retry_after="120"), "HTTP 429, retry after 120 s"),
    (JobScript(run_http=429), "HTTP 429"),
    (JobScript(run_http=500), "HTTP 500"),
    (JobScript(run_http=503), "HTTP 503"),
])
async def test_a_refused_submission_leaves_the_job_to_another_engine(
        http: httpx.AsyncClient, script: JobScript, said: str) -> None:
    with FakeRunPod([script]) as runpod, pytest.raises(BackendUnreachable) as info:
        await engine(http, runpod.url).render(job(), INPUT, Recorder())
    assert said in info.value.reason and info.value.backend == runpod.url and runpod.jobs == {}


async def test_a_short_retry_after_on_run_is_waited_for(http: httpx.AsyncClient) -> None:
    with FakeRunPod([JobScript(run_http=429, retry_after="1"), JobScript()]) as runpod:
        out = await engine(http, runpod.url).render(job(), INPUT, Recorder())
    assert [r.http_status for r in runpod.runs] == [429, 200] and out.image == next(iter(runpod.outputs.values()))


async def test_an_endpoint_that_refuses_connections_is_unreachable(http: httpx.AsyncClient) -> None:
    url = f"{closed_url()}/v2/fake-endpoint"
    with pytest.raises(BackendUnreachable) as info:
        await engine(http, url).render(job(), INPUT, Recorder())
    assert url in info.value.reason and info.value.backend == url


async def test_a_wrong_api_key_or_endpoint_id_is_unreachable_and_says_so(http: httpx.AsyncClient) -> None:
    with FakeRunPod() as runpod:
        with pytest.raises(BackendUnreachable) as key:
            await engine(http, runpod.url, api_key="nope").render(job(), INPUT, Recorder())
        with pytest.raises(BackendUnreachable) as endpoint:
            await engine(http, f"{runpod.base}/v2/no-such-endpoint").render(job(), INPUT, Recorder())
    assert "refused the API key" in key.value.reason and "(HTTP 401)" in key.value.reason
    assert "nope" not in key.value.reason and "check the endpoint id" in endpoint.value.reason
    assert runpod.jobs == {}


async def test_flaky_polls_are_retried_and_a_retry_after_is_honoured(http: httpx.AsyncClient) -> None:
    with FakeRunPod([JobScript(run_s=0.2, status_http=(502, 429, 500), retry_after="1")]) as runpod:
        out = await engine(http, runpod.url).render(job(), INPUT, Recorder())
        (job_id,) = runpod.jobs
    assert out.image == runpod.outputs[job_id] and runpod.polls[job_id] >= 4


async def test_past_the_deadline_the_job_is_cancelled_on_runpod(http: httpx.AsyncClient) -> None:
    with FakeRunPod([JobScript(queue_s=0.2, run_s=60)]) as runpod:
        with pytest.raises(RenderError) as info:
            await engine(http, runpod.url, deadline_s=1.0).render(job(), INPUT, Recorder())
        (job_id,) = runpod.jobs
        status = runpod.status(job_id)
    assert info.value.kind == "timeout" and "still IN_PROGRESS after 1 s" in info.value.reason
    assert runpod.cancels == [job_id] and status["status"] == "CANCELLED"


async def test_a_job_given_up_by_the_renderer_is_cancelled_on_runpod(http: httpx.AsyncClient) -> None:
    with FakeRunPod([JobScript(queue_s=60)]) as runpod:
        render = asyncio.create_task(engine(http, runpod.url).render(job(), INPUT, Recorder()))
        while not runpod.polls:
            await asyncio.sleep(0.02)
        render.cancel()
        with pytest.raises(asyncio.CancelledError):
            await render
        (job_id,) = runpod.jobs
        assert runpod.cancels == [job_id] and runpod.status(job_id)["status"] == "CANCELLED"


async def test_the_fake_fails_a_workflow_whose_load_image_was_not_sent() -> None:
    workflow = TemplateLibrary.load().get("qwen_edit").bind(job(), input_ref="missing.png").graph
    with FakeRunPod() as runpod:
        headers = {"Authorization": "Bearer fake-key"}
        async with httpx.AsyncClient(base_url=runpod.url, headers=headers, timeout=5) as client:
            queued = (await client.post("/run", json={"input": {"workflow": workflow}})).json()
            await asyncio.sleep(0.05)
            status = (await client.get(f"/status/{queued['id']}")).json()
    assert queued["status"] == "IN_QUEUE" and status["status"] == "FAILED"
    assert status["error"].startswith("Workflow validation failed:\n• Node 3 (errors)")
    assert "Invalid image file: missing.png" in status["error"]


async def test_the_fake_runs_as_its_own_process(http: httpx.AsyncClient, tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"jobs": [{"outcome": "failed", "error": "boom"}], "default": {"run_s": 0.1}}))
    process = subprocess.Popen([sys.executable, "-m", "tests.fakes.runpod_server", "--port", "0", "--script",
                                str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("fake-runpod listening on http://127.0.0.1:")
        url = line.split()[-1]
        with pytest.raises(RenderError) as info:
            await engine(http, url).render(job(), INPUT, Recorder())
        out = await engine(http, url).render(job(), INPUT, Recorder())
        runs = (await http.get(url.split("/v2/")[0] + "/_fake/runs")).json()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert info.value.kind == "execution" and info.value.reason == "boom"
    assert colour_of(out.image) == (245, 55, 225) and [r["images"] for r in runs] == [{INPUT_NAME: len(INPUT)}] * 2
