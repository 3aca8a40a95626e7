"""Bot jobs written into the log as the planner writes them, for the gateway's bot API tests (the planner
does not run there), and the RequestChain commands the gateway sends, read off the bus."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from contracts import (
    REGISTRY,
    ChainCompleted,
    ChainPlanned,
    ChainRequested,
    Envelope,
    Message,
    PlannedStep,
    RequestChain,
    StepAccepted,
    StepRendered,
    StepRequested,
)
from contracts.streams import chain_stream
from contracts.subjects import command_subject
from services.planner.batches import BatchRecorder
from services.planner.chain_writer import ChainService
from tests.fakes.gateway_world import ChainScript, GatewayWorld, png

__all__ = ["BotScript", "Sent", "record_batch_end", "requests_sent"]


class BotScript(ChainScript):
    """A chain as the planner writes it for a bot's request: text-to-image (`character_id` None, one unscored
    step) or a chain of edits, and optionally one of a batch."""

    def __init__(self, *args, request: RequestChain, **options) -> None:
        super().__init__(*args, user_id=request.user_id, character_id=request.character_id or "",
                         reference=request.reference_image, chain_id=request.chain_id,
                         request_text=request.request_text, steps=1, **options)
        self.request = request

    async def _plan(self) -> list[Callable[[], Message]]:
        requested = ChainRequested(**self.request.model_dump(exclude={"type", "version"}))
        if self.request.mode == "edit":
            script = await super()._plan()
            script[0] = lambda: requested
            return script
        cid = self.chain_id
        step = PlannedStep(index=0, kind="generate", prompt=self.request_text, width=96, height=96, seed=self.seed,
                           model="sd_xl_base_1.0.safetensors", template="sdxl_t2i", steps=30, cfg=6.5)
        image = await self.blobs.put_image(png((30, 140, (hash(cid) % 200) + 20)))
        self.images.append(image)
        return [
            lambda: requested,
            lambda: ChainPlanned(chain_id=cid, steps=(step,), planner="rules", threshold=40.0),
            lambda: StepRequested(chain_id=cid, step=0, attempt=1, seed=self.seed),
            lambda: StepRendered(chain_id=cid, step=0, attempt=1, image=image, workflow_hash="e" * 16,
                                 backend="fake", engine="comfyui"),
            lambda: StepAccepted(chain_id=cid, step=0, attempt=1, image=image, decision="unscored"),
            lambda: ChainCompleted(chain_id=cid, final_image=image, step_images=(image,)),
        ]


class Sent:
    """The RequestChain commands the gateway sends, as the planner would take them off the bus."""

    def __init__(self) -> None:
        self.requests: dict[uuid.UUID, RequestChain] = {}
        self.arrived = asyncio.Event()

    async def on(self, msg) -> None:
        request = Envelope.from_bytes(msg.data).open(REGISTRY)
        assert isinstance(request, RequestChain)
        self.requests[request.chain_id] = request
        self.arrived.set()

    async def of(self, chain_id: str | uuid.UUID) -> RequestChain:
        chain_id = uuid.UUID(str(chain_id))
        async with asyncio.timeout(10):
            while chain_id not in self.requests:
                self.arrived.clear()
                await self.arrived.wait()
        return self.requests[chain_id]


@contextlib.asynccontextmanager
async def requests_sent(world: GatewayWorld) -> AsyncIterator[Sent]:
    """The RequestChain commands sent while the block runs."""
    seen = Sent()
    sub = await world.nc.subscribe(command_subject("chain.request"), cb=seen.on)
    try:
        yield seen
    finally:
        await sub.unsubscribe()


def _now() -> datetime:
    return datetime.now(UTC)


async def record_batch_end(world: GatewayWorld, last: uuid.UUID) -> None:
    """What the planner does when a chain of a batch ends: the last one to end records the batch and its grid."""
    chains = ChainService(world.store, _now)
    cause = (await world.store.read_stream(chain_stream(last)))[-1].envelope
    await BatchRecorder(world.store, chains, lambda: world.blobs, _now).chain_ended(
        await chains.load(chain_stream(last)), cause)
