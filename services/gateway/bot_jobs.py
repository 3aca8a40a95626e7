"""A picture job as the bot API shows it: four states, the result's links, the error. Pure.

    queued       not planned yet
    processing   planned and being made (a batch: until every chain of it has ended)
    completed    a picture was made (a batch: at least one, and the grid of them)
    failed       no picture: refused, failed or cancelled; `error` says why

Links are ones a bot's key can follow for every nick it speaks for: `/job/{id}/image` (the chain's picture)
and `/batches/{id}/grid`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from contracts import BatchCompleted, ImageRef
from services.gateway.auth import NICK_SEPARATOR
from services.gateway.chain_reader import ChainRecord

__all__ = ["BOT_STATUS", "bot_batch", "bot_job", "nick_of", "picture_links"]

BOT_STATUS = {"queued": "queued", "running": "processing", "completed": "completed", "failed": "failed",
              "refused": "failed", "cancelled": "failed"}


def nick_of(owner: str | None) -> str | None:
    """The nick a chain was made for (None: its key's user itself)."""
    if owner is None or NICK_SEPARATOR not in owner:
        return None
    return owner.partition(NICK_SEPARATOR)[2]


def picture_links(chain_id: UUID, image: ImageRef, url: str | None = None) -> dict[str, Any]:
    return {**image.model_dump(), "job_id": str(chain_id), "url": url or f"/job/{chain_id}/image"}


def bot_job(record: ChainRecord, batch: dict[int, ChainRecord | None] | None = None,
             end: BatchCompleted | None = None) -> dict[str, Any]:
    """The job `record` is; with `batch` (its chains by place) when it heads one, and the batch's `end`."""
    chain_id, summary, request = record.chain_id, record.summary, record.request
    status = BOT_STATUS.get(summary.status, "processing") if request is not None else "queued"
    final = record.audit.final_image
    pictures = [picture_links(chain_id, final)] if final is not None else []
    error = summary.outcome if status == "failed" else None
    grid = None
    if batch is not None:
        pictures = [picture_links(r.chain_id, r.audit.final_image) for r in batch.values()
                    if r is not None and r.audit.final_image is not None]
        if end is not None and end.grid_image is not None:
            grid = picture_links(chain_id, end.grid_image, f"/batches/{chain_id}/grid")
        status, error = _batch_status(status, batch, end)
    result = None
    if status == "completed":
        shown = grid or pictures[0]
        result = {**shown, "grid": grid is not None, "pictures": pictures}
    return {
        "job_id": str(chain_id),
        "nick": nick_of(record.owner),
        "status": status,
        "result": result,
        "error": error,
        "character_id": (request.character_id if request else None) or _submitted_character(record),
        "request": request.request_text if request else (record.submission.request_text if record.submission else None),
        "batch_id": None if batch is None else str(chain_id),
        "links": {"job": f"/job/{chain_id}", "wait": f"/wait/{chain_id}", "events": f"/chains/{chain_id}/events",
                  "chain": f"/chains/{chain_id}", "batch": None if batch is None else f"/batch/{chain_id}"},
    }


def bot_batch(batch_id: UUID, count: int | None, chains: dict[int, ChainRecord | None],
               end: BatchCompleted | None) -> dict[str, Any]:
    """A batch: its state as one job's, and each of its jobs by place."""
    first = chains[0]
    assert first is not None
    head = bot_job(first, chains if count is not None else None, end)
    jobs = [_member(index, chains.get(index)) for index in range(count or 1)]
    return {"batch_id": str(batch_id), "nick": head["nick"], "status": head["status"], "count": count,
            "jobs": jobs, "grid": head["result"] if head["result"] and head["result"]["grid"] else None,
            "error": head["error"]}


def _member(index: int, record: ChainRecord | None) -> dict[str, Any]:
    if record is None:
        return {"index": index, "job_id": None, "status": "queued", "picture": None, "error": None}
    body = bot_job(record)
    final = record.audit.final_image
    return {"index": index, "job_id": body["job_id"], "status": body["status"],
            "picture": None if final is None else picture_links(record.chain_id, final), "error": body["error"]}


def _batch_status(first: str, chains: dict[int, ChainRecord | None],
                  end: BatchCompleted | None) -> tuple[str, str | None]:
    if end is None:
        return ("queued" if first == "queued" else "processing"), None
    if end.grid_image is not None:
        return "completed", None
    reasons = [r.summary.outcome for r in chains.values() if r is not None and r.summary.outcome]
    return "failed", "no chain of the batch made a picture" + (f": {reasons[0]}" if reasons else "")


def _submitted_character(record: ChainRecord) -> str | None:
    # A text-to-image request's submission row holds "" for its character.
    return (record.submission.character_id or None) if record.submission is not None else None
