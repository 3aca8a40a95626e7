"""The bot API, for programs that speak for many people (an IRC or Matrix bot in front of Likeness).

A bot holds an API key; `nick` (in the body, or the `X-Likeness-Nick` header on any endpoint) names the
person it speaks for, who acts as the user `<key's user>/<nick>`: limits, pictures, gallery and references
are that nick's own (services.gateway.auth). A message names a character (`@luna ...`, `--character luna`)
for a chain of edits of that character's reference (a built-in one's: the nick's own), or none for a
text-to-image picture; it carries the planner's modifiers. `queue_position`: services.gateway.render_queue.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from contracts import MAX_BATCH, ImageRef, RequestChain, variant_chain_id
from services.gateway.auth import NICK_MAX, NICK_PATTERN, User
from services.gateway.batch_reader import batch_chains, batch_end, heads_batch
from services.gateway.blob_urls import IMAGE_REDIRECT, presigned_redirect
from services.gateway.bot_jobs import bot_batch, bot_job
from services.gateway.bot_messages import MessageProblem, asks_for_count, character_named, read_message
from services.gateway.characters import visible_character
from services.gateway.context import Gateway
from services.gateway.deps import NICK_HEADER, GatewayDep, ImageUserDep, UserDep, acting_for, take_tokens
from services.gateway.errors import Conflict, NotFound, Unprocessable
from services.gateway.render_queue import jobs_ahead
from services.gateway.submit import start_chains

__all__ = ["router"]

router = APIRouter(tags=["bots"])

_MESSAGE_MAX = 2000
_IMMUTABLE = "private, max-age=31536000, immutable"
_NICK_DOC = (f"the person the bot speaks for (1-{NICK_MAX} characters, no white space or '/'); omit to act as the "
             f"key's own user. The {NICK_HEADER} header says the same on any endpoint")


class _Body(BaseModel):
    model_config = {"extra": "forbid", "str_strip_whitespace": True}


class BotRequest(_Body):
    message: str = Field(min_length=1, max_length=_MESSAGE_MAX, pattern=r"\S",
                         description="what to draw, with modifiers; `@luna` or `--character luna` names a character, "
                                     "e.g. \"@luna on a beach at sunset --seed 7 -c 2\"")
    nick: str | None = Field(default=None, max_length=NICK_MAX, pattern=NICK_PATTERN, description=_NICK_DOC)


class BotBatchRequest(_Body):
    requests: list[Annotated[str, Field(min_length=1, max_length=_MESSAGE_MAX, pattern=r"\S")]] = Field(min_length=2, max_length=MAX_BATCH,
                                description=f"2 to {MAX_BATCH} different requests, each with its own modifiers "
                                            "(but no --count: that is a batch of its own)")
    character: str | None = Field(default=None, max_length=64,
                                  description="the character of every picture (its id); omit for text-to-image")
    nick: str | None = Field(default=None, max_length=NICK_MAX, pattern=NICK_PATTERN, description=_NICK_DOC)


class BotAccepted(BaseModel):
    job_id: str
    queue_position: int | None = Field(description="render steps and picture requests ahead of this job when it "
                                                    "was accepted (0: none); null when the queue could not be read")
    status: str
    nick: str | None
    character_id: str | None = Field(description="the character drawn; null for a text-to-image picture")
    status_url: str
    wait_url: str
    events_url: str


class BotBatchJob(BaseModel):
    job_id: str
    request: str
    queue_position: int | None


class BotBatchAccepted(BaseModel):
    batch_id: str = Field(description="also the first job's id: GET /wait/{batch_id} waits for the whole batch")
    queue_position: int | None = Field(description="as for POST /request, of the batch's first job")
    status: str
    nick: str | None
    character_id: str | None
    jobs: list[BotBatchJob]
    batch_url: str
    wait_url: str


class BotPicture(BaseModel):
    job_id: str
    sha256: str
    media_type: str
    width: int
    height: int
    bytes: int
    url: str = Field(description="GET it with the bot's key: the picture (/job/{id}/image) or the grid")


class BotResult(BotPicture):
    grid: bool = Field(description="true when `url` is the grid of a batch's pictures")
    pictures: list[BotPicture] = Field(description="every picture made: one, or one per chain of a batch")


class BotLinks(BaseModel):
    job: str
    wait: str
    events: str
    chain: str
    batch: str | None


class BotJob(BaseModel):
    job_id: str
    nick: str | None
    status: str = Field(description="queued, processing, completed or failed")
    result: BotResult | None
    error: str | None = Field(description="why no picture was made (refused, failed or cancelled)")
    character_id: str | None
    request: str | None
    batch_id: str | None = Field(description="set when the job heads a batch: then its status is the batch's")
    links: BotLinks


class BotBatchMember(BaseModel):
    index: int
    job_id: str | None = Field(description="null until the planner has asked for this chain (--count)")
    status: str
    picture: BotPicture | None
    error: str | None


class BotBatch(BaseModel):
    batch_id: str
    nick: str | None
    status: str = Field(description="queued, processing (until every job has ended), completed or failed")
    count: int | None = Field(description="how many jobs; null until the first is planned (--count)")
    jobs: list[BotBatchMember]
    grid: BotResult | None = Field(description="the grid of the pictures made, once every job has ended")
    error: str | None


@router.post("/request", response_model=BotAccepted, status_code=202,
             summary="Ask for a picture for a person (nick); answers at once with the job and its queue position")
async def request_picture(body: BotRequest, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    actor = _actor(gateway, user, body.nick)
    message = _read(body.message)
    request = await _chain_request(gateway, actor, uuid.uuid4(), message.character_id, message.text)
    position = await jobs_ahead(gateway.runtime.bus.nc, timeout_s=gateway.settings.nats_timeout_s)
    await start_chains(gateway, actor, [request], origin="bot")
    job = str(request.chain_id)
    return {"job_id": job, "queue_position": position, "status": "queued", "nick": actor.nick,
            "character_id": request.character_id, "status_url": f"/job/{job}", "wait_url": f"/wait/{job}",
            "events_url": f"/chains/{job}/events"}


@router.get("/job/{job_id}", response_model=BotJob, summary="A bot's job: queued, processing, completed or failed")
async def get_job(job_id: UUID, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    """A job of one of the key's nicks; with a nick (X-Likeness-Nick), only that nick's. A job that heads a batch
    (`--count N`, POST /batch) reports the batch: completed once every chain has ended, with the grid."""
    record = await gateway.chains.load(job_id, user)
    if not heads_batch(record):
        return bot_job(record)
    return bot_job(record, await batch_chains(gateway.chains, record, user), await batch_end(gateway.store, job_id))


@router.get("/job/{job_id}/image", summary="The picture a job made (PNG, JPEG or WebP)",
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
                       307: IMAGE_REDIRECT})
async def get_job_image(job_id: UUID, request: Request, user: ImageUserDep, gateway: GatewayDep) -> Response:
    record = await gateway.chains.load(job_id, user)
    image = record.audit.final_image
    if image is None:
        raise NotFound(f"job {job_id} has no picture (yet): GET /job/{job_id} says where it stands",
                       code="image_not_ready")
    return await _image_response(gateway, request, image)


@router.post("/batch", response_model=BotBatchAccepted, status_code=202,
             summary="Ask for several different pictures at once: one job per request, and a grid when all have ended")
async def request_batch(body: BotBatchRequest, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    actor = _actor(gateway, user, body.nick)
    batch_id = uuid.uuid4()
    character = _character_id(body.character)
    requests = []
    for index, text in enumerate(body.requests):
        message = _read(text, where=f"requests[{index}]")
        if message.character_id is not None:
            raise Unprocessable(f"requests[{index}] names a character; a batch has one, in `character`",
                                code="character_in_request")
        if asks_for_count(message.text):
            raise Unprocessable(f"requests[{index}] has --count; a batch's requests are one picture each (send more "
                                "requests instead)", code="count_in_batch")
        requests.append(await _chain_request(gateway, actor, variant_chain_id(batch_id, index), character,
                                             message.text, batch=(batch_id, index, len(body.requests))))
    position = await jobs_ahead(gateway.runtime.bus.nc, timeout_s=gateway.settings.nats_timeout_s)
    await start_chains(gateway, actor, requests, origin="bot-batch")
    return {
        "batch_id": str(batch_id), "queue_position": position, "status": "queued", "nick": actor.nick,
        "character_id": character,
        # The planner takes requests in the order they were sent: each is behind the ones before it.
        "jobs": [{"job_id": str(r.chain_id), "request": r.request_text,
                  "queue_position": None if position is None else position + index}
                 for index, r in enumerate(requests)],
        "batch_url": f"/batch/{batch_id}", "wait_url": f"/wait/{batch_id}",
    }


@router.get("/batch/{batch_id}", response_model=BotBatch,
            summary="A batch (POST /batch or --count): each job's state and picture, and the grid once all have ended")
async def get_batch(batch_id: UUID, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    first = await gateway.chains.load(batch_id, user)
    if first.request is None:
        return bot_batch(batch_id, None, {0: first}, None)
    if not heads_batch(first):
        raise NotFound(f"job {batch_id} is not a batch: follow it with GET /job/{batch_id}", code="batch_not_found")
    chains = await batch_chains(gateway.chains, first, user)
    return bot_batch(batch_id, first.request.variant_count, chains, await batch_end(gateway.store, batch_id))


def _actor(gateway: Gateway, user: User, nick: str | None) -> User:
    """Who the request is for: the nick named in the body (charged to its own rate), else the caller."""
    if nick is None:
        return user
    actor = acting_for(user, nick)
    if user.nick is None:
        # The key's bucket was charged for this request already; the nick's was not.
        take_tokens(gateway, actor, 1.0, account=False)
    return actor


def _read(message: str, *, where: str = "message"):
    try:
        return read_message(message)
    except MessageProblem as problem:
        raise Unprocessable(f"{where}: {problem.detail}", code=problem.code) from None


def _character_id(value: str | None) -> str | None:
    try:
        return None if value is None else character_named(value)
    except MessageProblem as problem:
        raise Unprocessable(problem.detail, code=problem.code) from None


async def _chain_request(gateway: Gateway, actor: User, chain_id: UUID, character_id: str | None, text: str,
                         *, batch: tuple[UUID, int, int] | None = None) -> RequestChain:
    """The RequestChain for one picture: a chain of edits of the character's reference, or text-to-image."""
    batched = {} if batch is None else {"batch_id": batch[0], "variant_index": batch[1], "variant_count": batch[2],
                                        "batch_kind": "requests"}
    if character_id is None:
        return RequestChain(chain_id=chain_id, user_id=actor.id, request_text=text, mode="t2i", **batched)
    character = await visible_character(gateway.store, character_id, actor)
    if character.reference is None:
        whose = f"nick {actor.nick!r}'s own" if actor.nick is not None and character.builtin else "its"
        raise Conflict(f"{character.name or character.character_id} has no reference photo yet ({whose}), and every "
                       "picture of a character is an edit of it: upload one with POST /characters/upload-image "
                       f"(field `character_id`{f', header {NICK_HEADER}' if actor.nick is not None else ''})",
                       code="no_reference")
    return RequestChain(chain_id=chain_id, character_id=character.character_id, user_id=actor.id, request_text=text,
                        reference_image=character.reference, **batched)


async def _image_response(gateway: Gateway, request: Request, image: ImageRef) -> Response:
    headers = {"Cache-Control": _IMMUTABLE, "ETag": f'"{image.sha256}"'}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    redirect = await presigned_redirect(gateway, image.sha256)
    if redirect is not None:
        return redirect
    return Response(await gateway.blobs.get(image.sha256), media_type=image.media_type, headers=headers)
