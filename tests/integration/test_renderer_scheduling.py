"""The renderer service on real NATS with a fake ComfyUI: jobs wait in its fair scheduler, so one user's
queue of renders does not hold back another user's single one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from contracts import REGISTRY, Envelope, RenderCompleted, RenderStep
from contracts.subjects import COMMANDS_STREAM, command_subject
from services.renderer.service import CONSUMER, build_runtime
from services.renderer.settings import RendererSettings
from services.runtime.blobs import BlobStore
from services.runtime.settings import RuntimeSettings
from tests.factories import wrap
from tests.fakes.comfyui import FakeComfyUI, Scenario
from tests.integration.renderer_jobs import png
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
    for user, count in (("heavy", 8), ("light", 1)):
        for _ in range(count):
            chain = uuid.uuid4()
            chains[chain] = user
            step = RenderStep(chain_id=chain, step=0, attempt=1, seed=11, input_image=ref, prompt="in a forest",
                              width=512, height=512, steps=4, cfg=1.0, model="qwen-image-edit", template="qwen_edit",
                              user_id=user)
            commands.append(wrap(step, f"chain-{chain}"))
    done = await nc.subscribe("likeness.evt.render.*.*")
    # All nine are queued at JetStream, the heavy user's first, before the renderer starts taking them.
    for command in commands:
        await nc.jetstream().publish(command_subject("render.step"), command.to_bytes(),
                                     headers={"Nats-Msg-Id": str(command.event_id)})
    order: list[str] = []
    async with FakeComfyUI(Scenario(step_delay_s=0.1)) as fake:
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
    assert len(backend.prompts) == 9
