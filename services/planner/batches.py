"""`--count N`: when the last chain of a batch finishes, record the batch with a grid of its pictures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from contracts import BatchCompleted, Envelope
from contracts.streams import batch_stream, chain_stream
from services.planner.chain_writer import ChainService
from services.planner.grid import compose_grid
from services.planner.saga.decide import variant_chain_id
from services.planner.saga.state import ChainState, Status
from services.runtime.blobs import BlobStore
from services.runtime.eventstore import EventStore, WrongExpectedVersion
from services.runtime.ids import derived_id

__all__ = ["BatchRecorder"]

log = logging.getLogger(__name__)



class BatchRecorder:
    """Checks a batch each time one of its chains ends; the last one to end records it."""

    def __init__(self, store: EventStore, chains: ChainService, blobs: Callable[[], BlobStore],
                 clock: Callable[[], datetime]) -> None:
        self._store, self._chains, self._blobs, self._clock = store, chains, blobs, clock

    async def chain_ended(self, state: ChainState, cause: Envelope) -> None:
        request = state.request
        if request is None or request.batch_id is None or request.variant_count <= 1:
            return
        batch = request.batch_id
        ids = [batch, *(variant_chain_id(batch, i) for i in range(1, request.variant_count))]
        states = [await self._chains.load(chain_stream(chain_id)) for chain_id in ids]
        if not all(s.status.finished for s in states):
            return
        done = [s for s in states if s.status is Status.COMPLETED and s.accepted]
        grid = None
        if done:
            pictures = [await self._blobs().get(s.accepted[-1].sha256) for s in done]
            grid = await self._blobs().put_image(compose_grid(pictures))
        event = BatchCompleted(batch_id=batch, chain_ids=tuple(ids), completed=tuple(s.chain_id for s in done),
                               grid_image=grid)
        stream = batch_stream(batch)
        envelope = Envelope.wrap(event, event_id=derived_id(batch, "batch-completed"), stream=stream,
                                 occurred_at=self._clock(), correlation_id=chain_stream(batch),
                                 causation_id=str(cause.event_id), actor=cause.actor)
        try:
            await self._store.append(stream, 0, [envelope])
        except WrongExpectedVersion:
            log.info("batch %s was already recorded by another replica", batch)
