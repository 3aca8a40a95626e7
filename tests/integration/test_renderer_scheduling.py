"""The renderer service on real NATS with a fake ComfyUI: jobs wait in its fair scheduler, so one user's
queue of renders does not hold back another user's single one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest

from contracts import REGISTRY, Envelope, RenderCompleted, RenderStep
from contracts.subjects import COMMANDS_STREAM, command_subject
from services.renderer.comfy_engine import ComfyUIEngine
from services.renderer.comfyui.client import Timeouts
from services.renderer.engine import Queued, Tick
from services.renderer.pool import BackendPool
from services.renderer.service import CONSUMER, build_runtime
from services.renderer.settings import RendererSettings
from services.runtime.blobs import BlobStore
from services.renderer.templates import TemplateLibrary
from services.runtime.settings import RuntimeSettings
from tests.factories import wrap
from tests.fakes.comfyui import FakeComfyUI, Scenario
from tests.integration.renderer_jobs import INPUT, job, png
from tests.runtimes import running

pytestmark = pytest.mark.integration


@pytest.fixture
async def blobs(nc: nats.NATS, settings: RuntimeSettings) -> AsyncIterator[BlobStore]:
    yield await BlobStore.open(nc.jetstream(), settings=settings)
    await nc.jetstream().delete_consumer(COMMANDS_STREAM, CONSUMER)


async def test_a_light_users_step_overtakes_a_heavy_users_queue(settings: RuntimeSettings, nc: nats.NATS,
                                                                blobs: BlobStore) -> None:
    ref = await blobs.put_image(png((20, 120, 220)))
    chains: dict[uuid.UUID, str] = {}
    commands = []
    for user, count in (("heavy", 6), ("light", 1)):
        for _ in range(count):
            chain = uuid.uuid4()
            chains[chain] = user
            step = RenderStep(chain_id=chain, step=0, attempt=1, seed=11, input_image=ref, prompt="in a forest",
                              width=512, height=512, steps=4, cfg=1.0, model="qwen-image-edit", template="qwen_edit",
                              user_id=user)
            commands.append(wrap(step, f"chain-{chain}"))
    done = await nc.subscribe("likeness.evt.render.*.*")
    # All seven are queued at JetStream, the heavy user's first, before the renderer starts taking them.
    for command in commands:
        await nc.jetstream().publish(command_subject("render.step"), command.to_bytes(),
                                     headers={"Nats-Msg-Id": str(command.event_id)})
    order: list[str] = []
    # A render takes 4 x 0.2 s: ample time for the renderer to take the other six while the first renders.
    async with FakeComfyUI(Scenario(step_delay_s=0.2)) as fake:
        config = RendererSettings(nats_url=settings.nats_url, environment="test", comfyui_urls=(fake.url,),
                                  render_timeout_s=30, poll_interval_s=0.5)
        async with running(build_runtime(config)):
            while len(order) < len(commands):
                event = Envelope.from_bytes((await done.next_msg(timeout=30)).data).open(REGISTRY)
                assert isinstance(event, RenderCompleted), event
                order.append(chains[event.chain_id])
        backend = fake.state
    await done.unsubscribe()
    # One backend, one job at a time: the first heavy job was already rendering when the rest arrived,
    # and the light user's is the very next one (in arrival order it would have been the last).
    assert order.index("light") == 1, order
    assert len(backend.prompts) == 7


async def test_each_job_goes_to_the_backend_that_last_ran_its_model() -> None:
    """Two fake ComfyUI servers, jobs of two models one after another: each model stays on one backend."""
    async with httpx.AsyncClient(trust_env=False) as http, FakeComfyUI(Scenario()) as one, \
            FakeComfyUI(Scenario()) as two:
        pool = BackendPool([one.url, two.url], http)
        render = ComfyUIEngine(pool, TemplateLibrary.load(), http, deadline_s=20.0,
                               timeouts=Timeouts(connect_s=2.0, request_s=10.0, poll_s=0.5))
        used = {}
        # Not alternating: taking turns (least recently used first) would then put each model on both.
        for model in ("qwen-image-edit", "flux-kontext-dev", "flux-kontext-dev", "qwen-image-edit", "qwen-image-edit",
                      "flux-kontext-dev"):
            out = await render.render(job(model=model, template="qwen_edit"), INPUT, _ignore)
            used.setdefault(model, set()).add(out.backend)
    assert len(used["qwen-image-edit"]) == len(used["flux-kontext-dev"]) == 1
    assert used["qwen-image-edit"] != used["flux-kontext-dev"]
    assert {b.loaded for b in pool.backends.values()} == {"qwen-image-edit", "flux-kontext-dev"}


async def _ignore(update) -> None:
    return None


async def test_a_job_waiting_for_a_slot_hears_its_place_before_it_renders() -> None:
    first, second = [], []

    def recorder(into: list):
        async def record(update) -> None:
            into.append(update)
        return record

    async with httpx.AsyncClient(trust_env=False) as http, FakeComfyUI(Scenario(step_delay_s=0.05)) as fake:
        render = ComfyUIEngine(BackendPool([fake.url], http), TemplateLibrary.load(), http, deadline_s=20.0,
                               timeouts=Timeouts(connect_s=2.0, request_s=10.0, poll_s=0.5))
        await asyncio.gather(render.render(job(steps=6), INPUT, recorder(first)),
                             render.render(job(steps=6, seed=8), INPUT, recorder(second)))
    # One backend, one of our jobs on it at a time: the other waited in the scheduler, first in line,
    # and heard so before its first tick; ComfyUI's own queue stayed empty (nothing queued behind a prompt).
    waited = first if Queued(0) in first else second
    ticks = [i for i, u in enumerate(waited) if isinstance(u, Tick)]
    assert waited.index(Queued(0)) < ticks[0]
    assert Queued(1) not in first + second
