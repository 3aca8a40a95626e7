"""Picture jobs: ask for a picture of a character (a chain), poll it, or wait for it to end."""

from __future__ import annotations

import time
import uuid
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query

from contracts import CHAIN_ENDS, RequestChain
from contracts.streams import chain_stream
from services.gateway.chain_reader import job_body
from services.gateway.characters import visible_character
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
    return job_body(await gateway.chains.load(job_id, user))


@router.get("/wait/{job_id}", response_model=Job,
            summary="Block until the job ends or `timeout` seconds pass; then the same body as /chat/job")
async def wait_for_job(job_id: UUID, user: UserDep, gateway: GatewayDep,
                       timeout: float | None = Query(default=None, gt=0, description="seconds (capped by the server)"),
                       ) -> dict[str, Any]:
    settings = gateway.settings
    limit = min(timeout or settings.gateway_wait_default_s, settings.gateway_wait_max_s)
    deadline = time.monotonic() + limit
    record = await gateway.chains.load(job_id, user)
    if record.finished:
        return job_body(record)
    with gateway.hub.listen(chain_stream(job_id)) as listener:
        # Read again now that we listen: an end between the first read and the subscription is not missed.
        record = await gateway.chains.load(job_id, user)
        while not record.finished and (left := deadline - time.monotonic()) > 0:
            item = await listener.next(min(left, _RECHECK_S))
            if item is CLOSED:
                break
            if item is None or listener.lost or (item.persisted and item.type in CHAIN_ENDS):
                listener.lost = False
                record = await gateway.chains.load(job_id, user)
    return job_body(record)
