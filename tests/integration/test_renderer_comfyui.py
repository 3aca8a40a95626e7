"""The ComfyUI client and engine against the fake ComfyUI over real HTTP and websocket sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect

from services.renderer.comfy_engine import ComfyUIEngine
from services.renderer.comfyui.client import ComfyUIClient, Submission, Timeouts
from services.renderer.engine import Preview, Queued, Tick, Waiting
from services.renderer.errors import RenderError
from services.renderer.pool import BackendPool
from services.renderer.templates import TemplateLibrary
from tests.fakes.comfyui import FakeComfyUI, Scenario, closed_url
from tests.integration.renderer_jobs import INPUT, job, png

pytestmark = pytest.mark.integration

FAST = Timeouts(connect_s=2.0, request_s=10.0, poll_s=0.5, reconnect_delays_s=(0.05, 0.1, 0.2))


OUTPUT = png((200, 10, 30))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def engine(http: httpx.AsyncClient, urls: list[str], *, timeouts: Timeouts = FAST, deadline_s: float = 20.0,
           backend_wait_s: float = 0.0, backend_slots: int = 1, **pool_kw) -> ComfyUIEngine:
    pool = BackendPool(urls, http, **pool_kw)
    return ComfyUIEngine(pool, TemplateLibrary.load(), http, timeouts=timeouts, deadline_s=deadline_s,
                         backend_wait_s=backend_wait_s, backend_slots=backend_slots)


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
    def queued(self) -> list[Queued]:
        return [u for u in self.updates if isinstance(u, Queued)]

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
    assert body["client_id"] == state.connects[0]
    # The picture came over the socket: no file was written, and the history entry was deleted once read.
    output = body["prompt"][out_node(graph)]
    assert output["class_type"] == "SaveImageWebsocket" and set(output["inputs"]) == {"images"}
    assert not [key for key in state.files if key[0] in ("output", "temp")] and state.history == {}
    values = [t.value for t in progress.ticks]
    assert values == sorted(set(values)) and len(values) > 6 and values[-1] == progress.ticks[-1].max
    assert len(progress.previews) == 6 and progress.previews[0].media_type == "image/jpeg"
    assert progress.previews[0].node == "8"


def out_node(graph: dict) -> str:
    return next(n for n, node in graph.items() if node["class_type"] in ("SaveImage", "SaveImageWebsocket"))


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
    # ComfyUI names only the node id; the client knows the graph it sent and names the type.
    assert unknown_info.value.node_type == "NoSuchNode" and "(None)" not in unknown_info.value.reason


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
    # The wait is in the record, and the total counts it (a 0.8 s wait is not a 50 ms render).
    assert out.timings["backend_wait"] >= 500 and out.timings["total"] >= out.timings["backend_wait"]


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
    assert "rendered again 1 time(s) with the same seed: no ComfyUI backend" in info.value.reason
    assert not render.pool.backends[fake.url].healthy


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
    assert progress.ticks[-1].value == progress.ticks[-1].max  # frames after the reconnect arrived


async def test_a_picture_sent_while_disconnected_is_asked_for_again_from_the_cache(http: httpx.AsyncClient) -> None:
    scenario = Scenario(image_for=lambda g, i: OUTPUT, drop_socket_at_step=2, reconnect_hold_s=0.8)
    progress = Recorder()
    async with FakeComfyUI(scenario) as fake:
        out = await engine(http, [fake.url]).render(job(), INPUT, progress)
        assert len(fake.state.connects) == 2
        first, second = fake.state.prompts
        cached = fake.state.history  # forgotten once read
    assert out.image == OUTPUT and cached == {}
    # The same graph (same seed), so ComfyUI ran only the websocket node again: no attempt was spent.
    assert first["prompt"] == second["prompt"] and first["prompt_id"] != second["prompt_id"]
    assert progress.ticks[-1].value == progress.ticks[-1].max


async def test_a_prompt_that_finished_while_disconnected_is_read_from_history(http: httpx.AsyncClient) -> None:
    scenario = Scenario(image_for=lambda g, i: OUTPUT, drop_socket_at_step=2, reconnect_hold_s=0.8,
                        missing_classes={"SaveImageWebsocket"})
    progress = Recorder()
    async with FakeComfyUI(scenario) as fake:
        out = await engine(http, [fake.url]).render(job(), INPUT, progress)
        assert len(fake.state.connects) == 2
        (refused, taken) = fake.state.prompts
    assert out.image == OUTPUT
    # A server without SaveImageWebsocket was asked again with a file output named after the prompt.
    assert refused["prompt"] != taken["prompt"]
    assert f"likeness/{taken['prompt_id']}" in json.dumps(taken["prompt"])
    assert len([t for t in progress.ticks if t.value < t.max]) >= 1  # the rest happened while nobody listened


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


async def test_a_backend_restarted_mid_render_renders_it_again_with_the_same_seed(http: httpx.AsyncClient) -> None:
    """The prompt is lost with the restart: the same job runs again on the fresh server, no attempt is spent."""
    progress = Recorder()
    timeouts = Timeouts(connect_s=1.0, request_s=2.0, poll_s=0.3, reconnect_delays_s=(0.05, 0.1),
                        reconnect_give_up_s=5.0)
    fake = await FakeComfyUI(Scenario(step_delay_s=0.2)).start()
    port = int(fake.url.rsplit(":", 1)[1])
    render = engine(http, [fake.url], timeouts=timeouts, backend_wait_s=5.0)
    task = asyncio.create_task(render.render(job(steps=8, seed=4242), INPUT, progress))
    while not progress.ticks:
        await asyncio.sleep(0.05)
    await fake.stop()
    restarted = await FakeComfyUI(Scenario(step_delay_s=0.01), port=port).start()
    try:
        out = await asyncio.wait_for(task, 20)
        (prompt,) = restarted.state.prompts
    finally:
        await restarted.stop()
    assert out.image and out.backend == fake.url
    assert next(n for n in prompt["prompt"].values() if "seed" in n["inputs"])["inputs"]["seed"] == 4242


async def test_a_prompt_waiting_in_comfyuis_queue_says_how_many_are_ahead(http: httpx.AsyncClient) -> None:
    first, second = Recorder(), Recorder()
    async with FakeComfyUI(Scenario(step_delay_s=0.05)) as fake:
        # Two of our jobs at once on the backend: the second queues in ComfyUI (with one, it waits in ours).
        render = engine(http, [fake.url], backend_slots=2)
        await asyncio.gather(render.render(job(steps=10), INPUT, first),
                             render.render(job(steps=10, seed=8), png((1, 2, 3)), second))
    waited = first.queued + second.queued
    # One of the two waited behind the other, and heard so before its first tick.
    assert Queued(1) in waited
    later = first if Queued(1) in first.queued else second
    assert later.updates.index(Queued(1)) < later.updates.index(later.ticks[0])


async def test_a_cached_prompt_whose_file_is_gone_still_gives_the_picture(http: httpx.AsyncClient) -> None:
    """A server without SaveImageWebsocket saves files: the same job again (same seed) is answered from ComfyUI's
    cache; its file name is new each time, so deleting outputs meanwhile cannot make /view 404 (§7.7)."""
    scenario = Scenario(image_for=lambda g, i: OUTPUT, missing_classes={"SaveImageWebsocket"})
    async with FakeComfyUI(scenario) as fake:
        render = engine(http, [fake.url])
        same = job(seed=7)
        first = await render.render(same, INPUT, Recorder())
        for key in [k for k in fake.state.files if k[0] == "output"]:
            del fake.state.files[key]  # an operator cleaned the output folder
        again = await render.render(same, INPUT, Recorder())
        prompts = [p for p in fake.state.prompts if "SaveImageWebsocket" not in json.dumps(p)]
    assert first.image == again.image == OUTPUT and first.workflow_hash == again.workflow_hash
    # Asked with a file output once the server said it lacks the node; the seed is the job's both times.
    seeds = {n["inputs"]["seed"] for p in prompts for n in p["prompt"].values() if "seed" in n["inputs"]}
    assert len(prompts) == 2 and seeds == {7}


async def test_thirty_renders_leave_nothing_more_on_the_backend_than_one(http: httpx.AsyncClient) -> None:
    async with FakeComfyUI() as fake:
        render = engine(http, [fake.url])

        def footprint() -> tuple[int, int, int]:
            files = fake.state.files
            return len(files), sum(len(b) for b in files.values()), len(fake.state.history)

        await render.render(job(seed=0), png((0, 0, 0)), Recorder())
        after_one = footprint()
        for n in range(1, 30):
            last = png((n, 255 - n, 7))
            await render.render(job(seed=n), last, Recorder())
        after_hundred = footprint()
        uploads = len(fake.state.uploads)
    # One upload slot overwritten each time (holding the last input), no output file, no history entry kept.
    assert uploads == 30 and after_one[0] == after_hundred[0] == 1 and after_one[2] == after_hundred[2] == 0
    assert after_hundred[1] == len(last)


async def test_a_flux_kontext_job_with_its_style_and_light_loras_renders(http: httpx.AsyncClient) -> None:
    """The shipped flux_kontext had no LoRA slot, and every watercolor chain failed; it has two now."""
    from contracts import LoraUse

    loras = (LoraUse(name="soft_watercolor.safetensors", strength=0.8, role="style"),
             LoraUse(name="golden_hour_light.safetensors", strength=0.5, role="concept"))
    async with FakeComfyUI(Scenario(image_for=lambda g, i: OUTPUT)) as fake:
        render = engine(http, [fake.url])
        out = await render.render(job(model="flux-kontext-dev", template="flux_kontext", loras=loras), INPUT,
                                  Recorder())
        (sent,) = fake.state.prompts
        with pytest.raises(RenderError) as too_many:
            await render.render(job(model="flux-kontext-dev", template="flux_kontext", loras=(*loras, loras[0])),
                                INPUT, Recorder())
    switched = sorted((n["inputs"]["lora_name"], n["inputs"]["strength_model"]) for n in sent["prompt"].values()
                      if n["class_type"] == "CR Load LoRA" and n["inputs"]["switch"] == "On")
    assert out.image == OUTPUT and switched == [("golden_hour_light.safetensors", 0.5),
                                                ("soft_watercolor.safetensors", 0.8)]
    assert too_many.value.kind == "validation" and "room for 2 LoRA(s) but the job asks for 3" in too_many.value.reason


async def test_a_face_restore_uploads_the_picture_and_the_reference_and_reads_both(http: httpx.AsyncClient) -> None:
    reference = png((30, 40, 220))
    seen: list[dict] = []
    async with FakeComfyUI(Scenario(image_for=lambda graph, _input: seen.append(graph) or OUTPUT)) as fake:
        out = await engine(http, [fake.url]).render(job(template="face_restore"), INPUT, Recorder(),
                                                    reference_image=reference)
        state = fake.state
        loaded = {node_id: state.files[state.input_key(seen[0][node_id]["inputs"]["image"])] for node_id in ("2", "3")}
    assert out.image == OUTPUT
    # The picture to restore goes to its slot, the reference under its own content name; each LoadImage reads its own.
    assert loaded == {"2": INPUT, "3": reference}
    assert sorted(u["bytes"] for u in state.uploads) == sorted([len(INPUT), len(reference)])
    assert seen[0]["3"]["inputs"]["image"].endswith(".png") and seen[0]["9"]["inputs"]["denoise"] == 0.35


async def test_a_face_restore_without_the_reference_is_refused_before_any_backend(http: httpx.AsyncClient) -> None:
    async with FakeComfyUI() as fake:
        with pytest.raises(RenderError, match="reference picture, and the job brings none") as info:
            await engine(http, [fake.url]).render(job(template="face_restore"), INPUT, Recorder())
        assert info.value.kind == "validation" and fake.state.uploads == []
