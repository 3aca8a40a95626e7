"""Batches: the chains one `--count N` request fanned out into (or the requests of a POST /batch), each
variant's state and picture, and the grid of their pictures once every chain has ended.

A batch is named by its first chain (the batch id is that chain's id, the job id POST /chat/generate-image
answered). The planner asks for the other chains of `--count` itself and, when the last one ends, records
`BatchCompleted` with the grid on the batch's own stream (services.gateway.batch_reader reads both).
Nothing about a batch reaches a chain's event stream, so the page reads it here.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from contracts import BatchCompleted
from services.gateway.batch_reader import batch_chains, batch_end
from services.gateway.chain_reader import ChainRecord, image_links
from services.gateway.deps import GatewayDep, ImageUserDep, UserDep
from services.gateway.errors import NotFound

__all__ = ["router"]

router = APIRouter(tags=["chains"])

_IMMUTABLE = "private, max-age=31536000, immutable"


class Variant(BaseModel):
    variant_index: int = Field(description="0 is the first chain, whose id is the batch id")
    chain_id: str | None = Field(description="null until the planner has asked for this chain")
    status: str = Field(description="queued, running, completed, failed, refused or cancelled")
    score: float | None = Field(description="the face score of the picture, once a step is kept")
    final_image: dict[str, Any] | None = Field(description="the finished picture: sha256, url, thumb_url, ...")


class Batch(BaseModel):
    batch_id: str
    status: str = Field(description="queued (not planned yet), running, or completed (every chain ended)")
    count: int | None = Field(description="how many chains the request asked for; null until it is planned")
    chains: list[Variant] = Field(description="one per variant, by variant_index")
    completed: list[str] = Field(description="the chains that made a picture, once the batch is completed")
    grid_image: dict[str, Any] | None = Field(description="the grid of the pictures made: sha256, media_type, width, "
                                                          "height, bytes and `url` (GET /batches/{id}/grid)")



@router.get("/batches/{batch_id}", response_model=Batch, summary="A batch (--count or POST /batch): every chain, its state and picture, and the grid")
async def get_batch(batch_id: UUID, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    """`status` is queued (not planned yet, `count` unknown), running, or completed (every chain ended; `grid_image`
    is set when at least one made a picture). A variant the planner has not asked for yet is listed with
    `chain_id` null."""
    first = await gateway.chains.load(batch_id, user)
    request = first.request
    if request is None:
        return _body(batch_id, None, {0: first}, None)
    if request.batch_id != batch_id or request.variant_count <= 1:
        raise NotFound(f"chain {batch_id} is not the first chain of a batch: follow it with "
                       f"GET /chains/{batch_id}", code="batch_not_found")
    completed = await batch_end(gateway.store, batch_id)
    # A chain not planned yet (a POST /batch request waiting for the planner) is listed as queued.
    chains = {index: record for index, record in (await batch_chains(gateway.chains, first, user)).items()
              if index == 0 or (record is not None and record.request is not None)}
    return _body(batch_id, request.variant_count, chains, completed)


@router.get("/batches/{batch_id}/grid", summary="The grid of a completed batch's pictures (WebP)",
            responses={200: {"content": {"image/webp": {}}}})
async def get_grid(batch_id: UUID, request: Request, user: ImageUserDep, gateway: GatewayDep) -> Response:
    await gateway.chains.check_owner(batch_id, user)
    completed = await batch_end(gateway.store, batch_id)
    if completed is None or completed.grid_image is None:
        raise NotFound(f"batch {batch_id} has no grid (yet): it has one once every chain has ended and at least one "
                       f"made a picture; GET /batches/{batch_id} says where it stands", code="grid_not_found")
    grid = completed.grid_image
    # A batch is recorded once and never again, so its grid never changes.
    headers = {"Cache-Control": _IMMUTABLE, "ETag": f'"{grid.sha256}"'}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(await gateway.blobs.get(grid.sha256), media_type=grid.media_type, headers=headers)


def _body(batch_id: UUID, count: int | None, chains: dict[int, ChainRecord],
          completed: BatchCompleted | None) -> dict[str, Any]:
    variants = [_variant(index, chains.get(index)) for index in range(count or 1)]
    grid = None
    if completed is not None and completed.grid_image is not None:
        grid = {**completed.grid_image.model_dump(), "url": f"/batches/{batch_id}/grid"}
    return {
        "batch_id": str(batch_id),
        "status": "queued" if count is None else "completed" if completed is not None else "running",
        "count": count,
        "chains": variants,
        "completed": [str(i) for i in completed.completed] if completed is not None else [],
        "grid_image": grid,
    }


def _variant(index: int, record: ChainRecord | None) -> dict[str, Any]:
    if record is None:
        return {"variant_index": index, "chain_id": None, "status": "queued", "score": None, "final_image": None}
    summary = record.summary
    return {"variant_index": index, "chain_id": str(record.chain_id),
            "status": summary.status if record.request is not None else "queued",
            "score": summary.score, "final_image": image_links(record.audit.final_image)}
