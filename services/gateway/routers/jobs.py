"""Picture jobs: ask for a picture of a character (a chain), poll it, or wait for it to end.

The job of a batch's first chain (`--count N`, POST /batch) is the batch: its body has `batch`, and
/wait returns once every chain of it has ended and the batch is recorded (with its grid).
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query

from contracts import CHAIN_ENDS, RequestChain
from contracts.streams import batch_stream, chain_stream
from services.gateway.batch_reader import batch_end, batch_summary, heads_batch
from services.gateway.chain_reader import ChainRecord, job_body
from services.gateway.characters import visible_character
from services.gateway.context import Gateway
from services.gateway.deps import GatewayDep, UserDep
from services.gateway.errors import Conflict
from services.gateway.live import CLOSED
from services.gateway.schemas import ChainStarted, GenerateImageRequest, Job
from services.gateway.submit import start_chain

__all__ = ["router"]

router = APIRouter(tags=["pictures"])

# While waiting, the log is read this often too, in case a live message was missed.
_RECHECK_S = 2.0


@router.post("/chat/generate-image", response_model=ChainStarted, status_code=202,
             summary="Ask for a picture of a character; answers at once with the job (= chain) id")
async def generate_image(body: GenerateImageRequest, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    character = await visible_character(gateway.store, body.character_id, user)
    if character.reference is None:
        raise Conflict(f"{character.name or character.character_id} has no reference photo yet, and every picture is "
                       "an edit of it: upload one with POST /characters/upload-image (field `character_id`)",
                       code="no_reference")
    request = RequestChain(chain_id=uuid.uuid4(), character_id=character.character_id, user_id=user.id,
                           request_text=body.request, reference_image=character.reference)
    return await start_chain(gateway, user, request, origin="request")


@router.get("/chat/job/{job_id}", response_model=Job, summary="A picture job's status, progress and result")
async def get_job(job_id: UUID, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    record = await gateway.chains.load(job_id, user)
    return job_body(record, await _batch(gateway, record))


@router.get("/wait/{job_id}", response_model=Job,
            summary="Block until the job (a batch's: every chain of it) ends or `timeout` seconds pass; then the "
                    "same body as /chat/job")
async def wait_for_job(job_id: UUID, user: UserDep, gateway: GatewayDep,
                       timeout: float | None = Query(default=None, gt=0, description="seconds (capped by the server)"),
                       ) -> dict[str, Any]:
    settings = gateway.settings
    limit = min(timeout or settings.gateway_wait_default_s, settings.gateway_wait_max_s)
    deadline = time.monotonic() + limit
    found: list[ChainRecord] = []

    async def chain_ended() -> bool:
        found[:] = [await gateway.chains.load(job_id, user)]
        return found[0].finished

    async def batch_ended() -> bool:
        return await batch_end(gateway.store, job_id) is not None

    if await _until(gateway, chain_stream(job_id), chain_ended, deadline, ends=CHAIN_ENDS) and heads_batch(found[0]):
        await _until(gateway, batch_stream(job_id), batch_ended, deadline)
    return job_body(found[0], await _batch(gateway, found[0]))


async def _until(gateway: Gateway, stream: str, done, deadline: float, *, ends: frozenset[str] | None = None) -> bool:
    """Wait until `done()` says so or the deadline passes, woken by `stream`'s events (those in `ends`, when
    given) and by the log every few seconds; whether it is done."""
    if await done():
        return True
    with gateway.hub.listen(stream) as listener:
        # Ask again now that we listen: an end between the first look and the subscription is not missed.
        if await done():
            return True
        while (left := deadline - time.monotonic()) > 0:
            item = await listener.next(min(left, _RECHECK_S))
            if item is CLOSED:
                return False
            if item is None or listener.lost or (item.persisted and (ends is None or item.type in ends)):
                listener.lost = False
                if await done():
                    return True
    return False


async def _batch(gateway: Gateway, record: ChainRecord) -> dict[str, Any] | None:
    """The batch a job heads, where it stands (None for a job that heads none)."""
    if not heads_batch(record):
        return None
    assert record.request is not None
    return batch_summary(record.chain_id, record.request.variant_count, await batch_end(gateway.store, record.chain_id))
