"""A batch as the gateway reads it: the chains of a `--count N` request or of a POST /batch, and its end.

A batch is named by its first chain (the batch id is that chain's id). Its other chains have ids derived
from it (`contracts.variant_chain_id`), so they are read straight from their streams, no view needed; one
not asked for yet (the planner fans `--count` out once the first chain is planned) reads as None. When the
last chain ends the planner records `BatchCompleted`, with the grid of the pictures, on `batch-<id>`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from contracts import REGISTRY, BatchCompleted, ContractError, variant_chain_id
from contracts.streams import batch_stream
from services.gateway.auth import User
from services.gateway.chain_reader import ChainReader, ChainRecord
from services.gateway.errors import NotFound
from services.runtime.eventstore import EventStore

__all__ = ["batch_chains", "batch_end", "batch_summary", "heads_batch"]


def heads_batch(record: ChainRecord) -> bool:
    """Whether the chain is the first of a batch (its id is the batch id)."""
    request = record.request
    return request is not None and request.batch_id == record.chain_id and request.variant_count > 1


async def batch_end(store: EventStore, batch_id: UUID) -> BatchCompleted | None:
    """The batch's `BatchCompleted`, once the planner has recorded it."""
    for recorded in await store.read_stream(batch_stream(batch_id)):
        try:
            message = recorded.envelope.open(REGISTRY)
        except ContractError:
            continue
        if isinstance(message, BatchCompleted):
            return message
    return None


async def batch_chains(chains: ChainReader, first: ChainRecord, user: User) -> dict[int, ChainRecord | None]:
    """Every chain of the batch `first` heads, by its place; None for one the log does not have yet."""
    assert first.request is not None
    found: dict[int, ChainRecord | None] = {0: first}
    for index in range(1, first.request.variant_count):
        try:
            found[index] = await chains.load(variant_chain_id(first.chain_id, index), user)
        except NotFound:
            found[index] = None
    return found


def batch_summary(batch_id: UUID, count: int, end: BatchCompleted | None) -> dict[str, Any]:
    """Where a batch stands, as a job's `batch` field shows it."""
    return {
        "batch_id": str(batch_id),
        "count": count,
        "status": "running" if end is None else "completed",
        "completed": [] if end is None else [str(chain_id) for chain_id in end.completed],
        "grid_url": None if end is None or end.grid_image is None else f"/batches/{batch_id}/grid",
        "url": f"/batches/{batch_id}",
    }
