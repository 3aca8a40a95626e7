"""The renderer service on real NATS JetStream: RenderStep in, RenderCompleted or RenderFailed out, image in blobs."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import nats
import pytest
from PIL import Image

from contracts import REGISTRY, Envelope, RenderCompleted, RenderFailed, RenderStep
from contracts.subjects import COMMANDS_STREAM, command_subject
from services.renderer.service import CONSUMER, build_runtime
from services.renderer.settings import RendererSettings
from services.runtime.blobs import BlobStore
from services.runtime.ids import derived_id
from services.runtime.settings import RuntimeSettings
from tests.factories import wrap
from tests.fakes.comfyui import FakeComfyUI, Scenario, closed_url
from tests.runtimes import running

pytestmark = pytest.mark.integration


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (128, 160), colour).save(out, format="PNG")
    return out.getvalue()


OUTPUT = png((250, 200, 10))


@pytest.fixture
async def blobs(nc: nats.NATS, settings: RuntimeSettings) -> BlobStore:
    return await BlobStore.open(nc.jetstream(), settings=settings)


@pytest.fixture
async def service(settings: RuntimeSettings, nc: nats.NATS) -> AsyncIterator[Callable]:
    """Start the renderer service in-process on the given backends; stopped and its consumer removed after."""
    async with AsyncExitStack() as stack:

        async def start(urls: tuple[str, ...], **overrides) -> None:
            config = RendererSettings(nats_url=settings.nats_url, environment="test", comfyui_urls=urls,
                                      render_timeout_s=30, poll_interval_s=0.5, workers=2, **overrides)
            await stack.enter_async_context(running(build_runtime(config)))

        yield start
    await nc.jetstream().delete_consumer(COMMANDS_STREAM, CONSUMER)


async def send_and_wait(nc: nats.NATS, blobs: BlobStore, **overrides) -> tuple[Envelope, Envelope, list[Envelope]]:
    """Publish a RenderStep for a fresh chain; return the command, the result and the live messages seen."""
    chain = uuid.uuid4()
    ref = await blobs.put_image(png((20, 120, 220)))
    fields = dict(chain_id=chain, step=0, attempt=1, seed=11, input_image=ref, prompt="in a forest", width=512,
                  height=512, steps=4, cfg=1.0, model="qwen-image-edit", template="qwen_edit")
    step = RenderStep(**{**fields, **overrides})
    command = wrap(step, f"chain-{chain}")
    results = await nc.subscribe(f"likeness.evt.render.*.chain-{chain}")
    live: list[Envelope] = []

    async def collect(msg) -> None:
        live.append(Envelope.from_bytes(msg.data))

    live_sub = await nc.subscribe(f"likeness.live.render.*.chain-{chain}", cb=collect)
    await nc.jetstream().publish(command_subject("render.step"), command.to_bytes(),
                                 headers={"Nats-Msg-Id": str(command.event_id)})
    try:
        msg = await results.next_msg(timeout=45)
    finally:
        await results.unsubscribe()
        await asyncio.sleep(0.1)
        await live_sub.unsubscribe()
    return command, Envelope.from_bytes(msg.data), live


async def test_a_render_step_yields_render_completed_with_the_image_in_the_blob_store(
    service: Callable, nc: nats.NATS, blobs: BlobStore
) -> None:
    async with FakeComfyUI(Scenario(image_for=lambda graph, source: OUTPUT, step_delay_s=0.02)) as fake:
        await service((fake.url,))
        command, result, live = await send_and_wait(nc, blobs)
    event = result.open(REGISTRY)
    assert isinstance(event, RenderCompleted), event
    assert result.event_id == derived_id(command.event_id, "render-result")
    assert result.causation_id == str(command.event_id) and result.correlation_id == command.correlation_id
    assert (event.engine, event.backend, event.step, event.attempt) == ("comfyui", fake.url, 0, 1)
    assert await blobs.get(event.image.sha256) == OUTPUT
    assert (event.image.width, event.image.height, event.image.media_type) == (128, 160, "image/png")
    kinds = [e.type for e in live]
    assert "render.progress" in kinds and "render.preview" in kinds


async def test_a_face_restore_step_reads_the_reference_from_the_blob_store_into_its_second_load_image(
    service: Callable, nc: nats.NATS, blobs: BlobStore
) -> None:
    reference_bytes = png((200, 30, 90))
    reference = await blobs.put_image(reference_bytes)
    async with FakeComfyUI(Scenario(image_for=lambda graph, source: OUTPUT)) as fake:
        await service((fake.url,))
        _, result, _ = await send_and_wait(nc, blobs, template="face_restore", reference_image=reference)
        (graph,) = [p["prompt"] for p in fake.state.prompts]
        loaded = fake.state.files[fake.state.input_key(graph["3"]["inputs"]["image"])]
    assert isinstance(result.open(REGISTRY), RenderCompleted)
    assert loaded == reference_bytes


async def test_an_execution_error_yields_render_failed_naming_the_node(
    service: Callable, nc: nats.NATS, blobs: BlobStore
) -> None:
    async with FakeComfyUI(Scenario(fail_at_node="KSampler", fail_message="CUDA out of memory")) as fake:
        await service((fake.url,))
        command, result, _ = await send_and_wait(nc, blobs)
    event = result.open(REGISTRY)
    assert isinstance(event, RenderFailed), event
    assert (event.error_kind, event.node_id, event.node_type, event.backend) == ("execution", "8", "KSampler", fake.url)
    assert "CUDA out of memory" in event.reason
    assert result.event_id == derived_id(command.event_id, "render-result")


async def test_a_step_arriving_while_comfyui_restarts_waits_for_it_and_completes(
    service: Callable, nc: nats.NATS, blobs: BlobStore
) -> None:
    url = closed_url()
    await service((url,), render_backend_wait_s=10)

    async def restart_later() -> None:
        await asyncio.sleep(1.0)
        async with FakeComfyUI(Scenario(image_for=lambda graph, source: OUTPUT), port=int(url.rsplit(":", 1)[1])):
            await asyncio.sleep(5)

    comfyui = asyncio.create_task(restart_later())
    try:
        _, result, live = await send_and_wait(nc, blobs)
    finally:
        comfyui.cancel()
        await asyncio.gather(comfyui, return_exceptions=True)
    event = result.open(REGISTRY)
    assert isinstance(event, RenderCompleted), event
    assert event.backend == url and await blobs.get(event.image.sha256) == OUTPUT
    # Meanwhile the page was told why nothing moved.
    waiting = [e.open(REGISTRY) for e in live if e.type == "render.waiting"]
    assert waiting and all(w.limit_s == 10 and w.waited_s <= 10 for w in waiting)


async def test_a_backend_that_does_not_come_back_in_time_fails_the_step_as_unreachable(
    service: Callable, nc: nats.NATS, blobs: BlobStore
) -> None:
    url = closed_url()
    await service((url,), render_backend_wait_s=1)
    _, result, _ = await send_and_wait(nc, blobs)
    event = result.open(REGISTRY)
    assert isinstance(event, RenderFailed), event
    assert event.error_kind == "unreachable"
    assert "no ComfyUI backend could take the job after waiting 1." in event.reason and url in event.reason


async def test_without_comfyui_the_draft_engine_renders(service: Callable, nc: nats.NATS, blobs: BlobStore) -> None:
    await service(())
    _, result, _ = await send_and_wait(nc, blobs)
    event = result.open(REGISTRY)
    assert isinstance(event, RenderCompleted) and (event.engine, event.backend) == ("draft", "draft")
    assert len(await blobs.get(event.image.sha256)) == event.image.bytes


async def test_a_text_to_image_step_renders_without_an_input_at_the_jobs_size(
    service: Callable, nc: nats.NATS, blobs: BlobStore
) -> None:
    async with FakeComfyUI() as fake:
        await service((fake.url,))
        _, result, _ = await send_and_wait(nc, blobs, input_image=None, template="sdxl_t2i", width=320, height=192,
                                           model="sd_xl_base_1.0.safetensors")
        (prompt,) = fake.state.prompts
    event = result.open(REGISTRY)
    assert isinstance(event, RenderCompleted), event
    assert fake.state.uploads == []
    latent = next(n for n in prompt["prompt"].values() if n["class_type"] == "EmptyLatentImage")
    assert (latent["inputs"]["width"], latent["inputs"]["height"]) == (320, 192)
    assert (event.image.width, event.image.height) == (320, 192)


async def test_without_comfyui_a_text_to_image_step_is_a_draft_canvas(
    service: Callable, nc: nats.NATS, blobs: BlobStore
) -> None:
    await service(())
    _, result, _ = await send_and_wait(nc, blobs, input_image=None, template="sdxl_t2i", width=320, height=192)
    event = result.open(REGISTRY)
    assert isinstance(event, RenderCompleted) and event.engine == "draft"
    assert event.image.width == 320 and event.image.height > 192  # the canvas, and the draft's band below it
