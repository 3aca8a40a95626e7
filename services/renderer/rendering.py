"""Rendering one RenderStep: input from the blob store, render, output to the blob store, one result event.

The result's event id derives from the command's, so a redelivered command publishes the same id
and JetStream's de-duplication keeps one. Progress and previews are ephemeral, on core NATS.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts.base import Message
from contracts.envelope import Envelope
from contracts.render import RenderCompleted, RenderFailed, RenderPreview, RenderProgress, RenderStep, RenderWaiting
from contracts.streams import chain_stream
from services.renderer.engine import Preview, Queued, RenderEngine, RenderUpdate, Waiting
from services.renderer.errors import RenderError
from services.renderer.metrics import JOBS_IN_FLIGHT, record_render
from services.renderer.previews import shrink_preview
from services.runtime.blobs import BlobCorrupt, BlobNotFound, BlobStore, BlobTooLarge, NotAnImage
from services.runtime import tracing
from services.runtime.bus import Bus
from services.runtime.ids import derived_id

__all__ = ["Renderer"]

log = logging.getLogger(__name__)


@dataclass
class Renderer:
    """Renders one RenderStep per `render` call; safe to run concurrently."""

    bus: Bus
    blobs: BlobStore
    engine: RenderEngine
    preview_max_bytes: int = 48 * 1024
    preview_interval_s: float = 0.25

    async def render(self, job: RenderStep, incoming: Envelope) -> None:
        try:
            # A text-to-image job has no input: it draws from its prompt alone.
            source = None if job.input_image is None else await self.blobs.get(job.input_image.sha256)
            # A face restore also reads the character's reference picture.
            reference = None if job.reference_image is None else await self.blobs.get(job.reference_image.sha256)
        except (BlobNotFound, BlobCorrupt) as exc:
            await self._fail(job, incoming, RenderError("validation", f"cannot use the input image: {exc}"))
            return
        began = time.monotonic()
        try:
            with JOBS_IN_FLIGHT.track_inprogress(), tracing.span(f"render {job.template}", attributes={
                    "likeness.engine": self.engine.name, "likeness.model": job.model, "likeness.step": job.step,
                    "likeness.attempt": job.attempt}):
                output = await self.engine.render(job, source, self._progress(job, incoming), reference_image=reference)
        except RenderError as exc:
            record_render(self.engine.name, exc.kind)
            log.warning("render of chain %s step %s attempt %s failed (%s): %s", job.chain_id, job.step,
                        job.attempt, exc.kind, exc.reason)
            await self._fail(job, incoming, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a bug in an engine becomes a recorded failure, not a redelivery loop
            record_render(self.engine.name, "internal")
            log.exception("engine %s crashed on chain %s step %s", self.engine.name, job.chain_id, job.step)
            await self._fail(job, incoming, RenderError("internal", f"{type(exc).__name__}: {exc}"))
            return
        record_render(output.engine, "completed", seconds=time.monotonic() - began, timings=output.timings)
        try:
            image = await self.blobs.put_image(output.image)
        except (BlobTooLarge, NotAnImage) as exc:
            await self._fail(job, incoming, RenderError("internal", f"the rendered image was refused: {exc}",
                                                        backend=output.backend))
            return
        await self._publish(incoming, RenderCompleted(
            chain_id=job.chain_id, step=job.step, attempt=job.attempt, image=image,
            workflow_hash=output.workflow_hash, backend=output.backend, engine=output.engine, timings=output.timings,
            cost_usd=output.cost_usd,
        ))

    async def _fail(self, job: RenderStep, incoming: Envelope, error: RenderError) -> None:
        await self._publish(incoming, RenderFailed(
            chain_id=job.chain_id, step=job.step, attempt=job.attempt, reason=error.reason, error_kind=error.kind,
            node_id=error.node_id, node_type=error.node_type, backend=error.backend,
        ))

    async def _publish(self, incoming: Envelope, message: Message) -> None:
        envelope = _envelope(message, incoming, derived_id(incoming.event_id, "render-result"))
        await self.bus.publish(envelope, message)

    def _progress(self, job: RenderStep, incoming: Envelope):
        last_preview = [float("-inf")]

        async def publish(update: RenderUpdate) -> None:
            if isinstance(update, Waiting):
                message: Message = RenderWaiting(chain_id=job.chain_id, step=job.step, attempt=job.attempt,
                                                 waited_s=round(update.waited_s, 1), limit_s=update.limit_s)
            elif isinstance(update, Queued):
                # Waiting in the backend's own queue: nothing sampled yet, `ahead` prompts before it.
                message = RenderProgress(chain_id=job.chain_id, step=job.step, attempt=job.attempt, value=0, max=1,
                                         queue_position=update.ahead)
            elif isinstance(update, Preview):
                now = time.monotonic()
                if now - last_preview[0] < self.preview_interval_s:
                    return
                data = shrink_preview(update.data, self.preview_max_bytes)
                if data is None:
                    return
                last_preview[0] = now
                message = RenderPreview(chain_id=job.chain_id, step=job.step, attempt=job.attempt,
                                        media_type="image/jpeg", node=update.node,
                                        data_base64=base64.b64encode(data).decode())
            else:
                message = RenderProgress(chain_id=job.chain_id, step=job.step, attempt=job.attempt,
                                         value=update.value, max=update.max, node=update.node)
            try:
                await self.bus.publish_live(_envelope(message, incoming, uuid.uuid4()))
            except Exception as exc:  # noqa: BLE001 - live traffic is best effort
                log.debug("live publish failed: %s", exc)

        return publish


def _envelope(message: Message, incoming: Envelope, event_id: uuid.UUID) -> Envelope:
    chain_id = message.chain_id  # type: ignore[attr-defined]
    return Envelope.caused_by(message, incoming, event_id=event_id, stream=chain_stream(chain_id),
                              occurred_at=datetime.now(UTC))
