"""The ComfyUI client and engine against the fake ComfyUI over real HTTP and websocket sockets."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import connect

from contracts import ImageRef, RenderStep
from services.renderer.comfy_engine import ComfyUIEngine
from services.renderer.comfyui.client import ComfyUIClient, Submission, Timeouts
from services.renderer.engine import Preview, Tick, Waiting
from services.renderer.errors import RenderError
from services.renderer.pool import BackendPool
from services.renderer.templates import TemplateLibrary
from tests.fakes.comfyui import FakeComfyUI, Scenario, closed_url

pytestmark = pytest.mark.integration

FAST = Timeouts(connect_s=2.0, request_s=10.0, poll_s=0.5, reconnect_delays_s=(0.05, 0.1, 0.2))


def png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 80)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


INPUT = png((10, 200, 30))
OUTPUT = png((200, 10, 30))


def job(**kw) -> RenderStep:
    ref = ImageRef(sha256="ab" * 32, media_type="image/png", width=96, height=80, bytes=len(INPUT))
    fields = dict(chain_id=uuid.uuid4(), step=0, attempt=1, seed=7, input_image=ref, prompt="on a beach", width=512,
                  height=512, steps=6, cfg=1.0, model="qwen-image-edit", template="qwen_edit")
    return RenderStep(**{**fields, **kw})


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def engine(http: httpx.AsyncClient, urls: list[str], *, timeouts: Timeouts = FAST, deadline_s: float = 20.0,
           backend_wait_s: float = 0.0, **pool_kw) -> ComfyUIEngine:
    pool = BackendPool(urls, http, **pool_kw)
    return ComfyUIEngine(pool, TemplateLibrary.load(), http, timeouts=timeouts, deadline_s=deadline_s,
                         backend_wait_s=backend_wait_s)


class Recorder:
    def __init__(self) -> None:
        self.updates: list = []

    async def __call__(self, update) -> None:
        self.updates.append(update)

    @property
    def ticks(self) -> list[Tick]:
        return [u for u in self.updates if isinstance(u, Tick)]

    @property
    def previews(self) -> list[Preview]:
        return [u for u in self.updates if isinstance(u, Preview)]

    @property
    def waits(self) -> list[Waiting]:
        return [u for u in self.updates if isinstance(u, Waiting)]


async def test_a_render_uploads_queues_streams_progress_and_returns_the_output(http: httpx.AsyncClient) -> None:
    seen: list[tuple[dict, bytes | None]] = []

    def policy(graph: dict, input_bytes: bytes | None) -> bytes:
        seen.append((graph, input_bytes))
        return OUTPUT

    progress = Recorder()
    async with FakeComfyUI(Scenario(image_for=policy, step_delay_s=0.01)) as fake:
        out = await engine(http, [fake.url]).render(job(), INPUT, progress)
        state = fake.state
    assert out.image == OUTPUT and out.media_type == "image/png" and out.backend == fake.url
    assert out.engine == "comfyui" and len(out.workflow_hash) == 64 and out.timings["total"] > 0
    graph, uploaded = seen[0]
    assert uploaded == INPUT and graph["8"]["inputs"]["seed"] == 7 and graph["5"]["inputs"]["prompt"] == "on a beach"
    assert state.uploads == [{"name": graph["3"]["inputs"]["image"].split("/")[1], "subfolder": "likeness",
                              "type": "input", "overwrite": True, "bytes": len(INPUT)}]
    body = state.prompts[0]
    assert body["client_id"] == state.connects[0] and body["prompt_id"] in state.history
    assert [t.value for t in progress.ticks] == [1, 2, 3, 4, 5, 6] and {t.max for t in progress.ticks} == {6}
    assert len(progress.previews) == 6 and progress.previews[0].media_type == "image/jpeg"
    assert progress.previews[0].node == "8"


async def test_a_rejected_graph_names_the_node_and_why(http: httpx.AsyncClient) -> None:
    async with FakeComfyUI() as fake:
        client = ComfyUIClient(fake.url, http, FAST)
        template = TemplateLibrary.load().get("qwen_edit")
        bound = template.bind(job(), input_ref="likeness/never_uploaded.png")
        # Nothing uploaded: LoadImage validation fails (§5.1).
        submission = Submission(bound.graph, bound.output_node)
        with pytest.raises(RenderError) as info:
            await client.render(submission, deadline_s=10, on_update=Recorder())
        unknown = {**bound.graph, "99": {"class_type": "NoSuchNode", "inputs": {}}}
        with pytest.raises(RenderError) as unknown_info:
            await client.render(Submission(unknown, bound.output_node), deadline_s=10, on_update=Recorder())
    error = info.value
    assert (error.kind, error.node_id, error.node_type, error.backend) == ("validation", "3", "LoadImage", fake.url)
    assert "Invalid image file: likeness/never_uploaded.png" in error.reason
    assert unknown_info.value.node_id == "99" and "NoSuchNode does not exist" in unknown_info.value.reason


async def test_an_execution_error_fails_with_node_type_and_message(http: httpx.AsyncClient) -> None:
    scenario = Scenario(fail_at_node="KSampler", fail_type="torch.OutOfMemoryError",
                        fail_message="Allocation on device 0 would exceed allowed memory")
    async with FakeComfyUI(scenario) as fake:
        with pytest.raises(RenderError) as info:
            await engine(http, [fake.url]).render(job(), INPUT, Recorder())
    error = info.value
    assert (error.kind, error.node_id, error.node_type, error.backend) == ("execution", "8", "KSampler", fake.url)
    assert "torch.OutOfMemoryError: Allocation on device 0 would exceed allowed memory" in error.reason


async def test_an_unreachable_backend_fails_clearly(http: httpx.AsyncClient) -> None:
    url = closed_url()
    with pytest.raises(RenderError) as info:
        await engine(http, [url]).render(job(), INPUT, Recorder())
    assert info.value.kind == "unreachable" and url in info.value.reason


async def test_a_job_waits_for_its_only_backend_to_come_back(http: httpx.AsyncClient) -> None:
    url = closed_url()
    port = int(url.rsplit(":", 1)[1])
    progress = Recorder()
    render = asyncio.create_task(engine(http, [url], backend_wait_s=10).render(job(), INPUT, progress))
    await asyncio.sleep(0.8)  # refused at once, then re-probed at 0.5 s: still down
    assert not render.done() and progress.waits and progress.waits[0].backends == (url,)
    async with FakeComfyUI(Scenario(image_for=lambda g, i: OUTPUT), port=port):
        out = await asyncio.wait_for(render, 10)
    assert out.image == OUTPUT and out.backend == url
    assert progress.waits[-1].limit_s == 10 and progress.ticks  # then it rendered as usual


async def test_a_backend_that_stays_down_fails_after_the_wait_saying_so(http: httpx.AsyncClient) -> None:
    url = closed_url()
    with pytest.raises(RenderError) as info:
        await engine(http, [url], backend_wait_s=1).render(job(), INPUT, Recorder())
    reason = info.value.reason
    assert info.value.kind == "unreachable" and "after waiting 1." in reason and f"tried {url} (" in reason
    with pytest.raises(RenderError) as at_once:
        await engine(http, [url], backend_wait_s=0).render(job(), INPUT, Recorder())
    assert at_once.value.kind == "unreachable" and "(waiting for one is off)" in at_once.value.reason


async def test_a_backend_dying_mid_render_fails_the_attempt_as_unreachable(http: httpx.AsyncClient) -> None:
    progress = Recorder()
    timeouts = Timeouts(connect_s=1.0, request_s=2.0, poll_s=0.5, reconnect_delays_s=(0.05, 0.1),
                        reconnect_give_up_s=0.5)
    fake = await FakeComfyUI(Scenario(step_delay_s=0.2)).start()
    render = engine(http, [fake.url], timeouts=timeouts)
    task = asyncio.create_task(render.render(job(steps=30), INPUT, progress))
    while not progress.ticks:
        await asyncio.sleep(0.05)
    await fake.stop()
    with pytest.raises(RenderError) as info:
        await asyncio.wait_for(task, 10)
    assert info.value.kind == "unreachable" and "went away during the render" in info.value.reason
    assert info.value.backend == fake.url and not render.pool.backends[fake.url].healthy


async def test_a_hanging_backend_fails_after_the_connect_timeout(http: httpx.AsyncClient) -> None:
    async with FakeComfyUI(Scenario(hang=True)) as fake:
        timeouts = Timeouts(connect_s=0.5, request_s=1.0, poll_s=0.5)
        with pytest.raises(RenderError) as info:
            await engine(http, [fake.url], timeouts=timeouts).render(job(), INPUT, Recorder())
    assert info.value.kind == "unreachable" and "TimeoutError" in info.value.reason and fake.url in info.value.reason


async def test_the_render_deadline_cancels_the_prompt_on_the_backend(http: httpx.AsyncClient) -> None:
    async with FakeComfyUI(Scenario(step_delay_s=0.5)) as fake:
        with pytest.raises(RenderError) as info:
            await engine(http, [fake.url], deadline_s=1.0).render(job(steps=20), INPUT, Recorder())
        for _ in range(50):
            if fake.state.history:
                break
            await asyncio.sleep(0.1)
        entry = next(iter(fake.state.history.values()))
    assert info.value.kind == "timeout" and "1 s" in info.value.reason
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


async def test_one_backend_down_the_other_serves(http: httpx.AsyncClient) -> None:
    down = closed_url()
    async with FakeComfyUI() as fake:
        render = engine(http, [down, fake.url])
        out = await render.render(job(), INPUT, Recorder())
        assert out.backend == fake.url and not render.pool.backends[down].healthy
        # Now marked down, the next job goes straight to the healthy one.
        assert render.pool.candidates("qwen-image-edit", None)[0] == fake.url


async def test_jobs_are_routed_to_the_backend_serving_their_style(http: httpx.AsyncClient) -> None:
    async with FakeComfyUI() as anime, FakeComfyUI() as photo:
        serves = {anime.url: ((), ("anime",)), photo.url: ((), ("photo",))}
        render = engine(http, [anime.url, photo.url], serves=serves)
        assert (await render.render(job(style="photo"), INPUT, Recorder())).backend == photo.url
        assert (await render.render(job(style="anime"), INPUT, Recorder())).backend == anime.url
        with pytest.raises(RenderError, match="no ComfyUI backend serves"):
            await render.render(job(style="oil"), INPUT, Recorder())


async def test_a_dropped_websocket_is_reopened_with_the_same_client_id(http: httpx.AsyncClient) -> None:
    progress = Recorder()
    async with FakeComfyUI(Scenario(step_delay_s=0.15, drop_socket_at_step=2)) as fake:
        out = await engine(http, [fake.url]).render(job(), INPUT, progress)
        connects, drops = fake.state.connects, fake.state.drops
    assert out.image and len(connects) == 2 and connects[0] == connects[1] and drops == [connects[0]]
    assert progress.ticks[-1].value == 6  # frames after the reconnect arrived


async def test_a_prompt_that_finished_while_disconnected_is_read_from_history(http: httpx.AsyncClient) -> None:
    scenario = Scenario(image_for=lambda g, i: OUTPUT, drop_socket_at_step=2, reconnect_hold_s=0.8)
    progress = Recorder()
    async with FakeComfyUI(scenario) as fake:
        out = await engine(http, [fake.url]).render(job(), INPUT, progress)
        assert len(fake.state.connects) == 2
    assert out.image == OUTPUT
    assert [t.value for t in progress.ticks] == [1, 2]  # the rest happened while nobody listened


async def test_text_to_image_uploads_nothing(http: httpx.AsyncClient) -> None:
    async with FakeComfyUI() as fake:
        out = await engine(http, [fake.url]).render(job(template="sdxl_t2i", model="sdxl"), INPUT, Recorder())
        assert fake.state.uploads == [] and out.image


async def test_an_idle_backend_is_asked_to_free_memory(http: httpx.AsyncClient) -> None:
    async with FakeComfyUI() as fake:
        render = engine(http, [fake.url], idle_free_s=0.01)
        await render.render(job(), INPUT, Recorder())
        await asyncio.sleep(0.05)
        assert await render.pool.free_idle() == [fake.url]
        assert fake.state.free_calls == [{"unload_models": True, "free_memory": True}]


async def test_the_fake_speaks_the_documented_upload_view_and_legacy_preview_semantics(
    http: httpx.AsyncClient,
) -> None:
    async with FakeComfyUI() as fake:
        async def upload(data: bytes, **form: str) -> dict:
            files = {"image": ("renderer_in.png", data, "image/png")}
            return (await http.post(f"{fake.url}/upload/image", files=files, data=form)).json()

        assert (await upload(INPUT))["name"] == "renderer_in.png"
        assert (await upload(INPUT))["name"] == "renderer_in.png"  # same bytes: same name
        assert (await upload(OUTPUT))["name"] == "renderer_in (1).png"  # different bytes: renamed (§2.1)
        assert (await upload(OUTPUT, overwrite="true"))["name"] == "renderer_in.png"
        assert (await http.get(f"{fake.url}/view", params={"filename": "nope.png"})).status_code == 404
        assert (await http.get(f"{fake.url}/view", params={"filename": "../../etc/passwd"})).status_code == 400
        assert (await http.get(f"{fake.url}/history/unknown")).json() == {}

        graph = TemplateLibrary.load().get("qwen_edit").bind(job(steps=2), input_ref="renderer_in.png").graph
        async with connect(f"{fake.url.replace('http', 'ws')}/ws?clientId=legacy", proxy=None) as ws:
            first = json.loads(await ws.recv())
            answer = await http.post(f"{fake.url}/prompt", json={"prompt": graph, "client_id": "legacy"})
            prompt_id = answer.json()["prompt_id"]
            binaries, last = [], None
            while last != {"node": None, "prompt_id": prompt_id}:
                frame = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(frame, bytes):
                    binaries.append(frame[:8])
                elif json.loads(frame)["type"] == "executing":
                    last = json.loads(frame)["data"]
    assert first == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "legacy"}}
    # No feature flags sent: legacy type 1 JPEG previews only (§3.2).
    assert binaries == [bytes.fromhex("0000000100000001")] * 2
