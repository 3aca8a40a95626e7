"""Chains: state, the live event stream (SSE, resumable), the audit, re-render, compare, branch, cancel."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from contracts import CancelChain, RequestChain
from contracts.streams import chain_stream
from services.gateway.chain_reader import ChainRecord, image_links
from services.gateway.context import Gateway
from services.gateway.deps import GatewayDep, UserDep
from services.gateway.errors import Conflict, Unprocessable
from services.gateway.images import dhash, hamming
from services.gateway.schemas import BranchRequest, ChainStarted
from services.gateway.sse import MAX_EVENT_ID, SSE_HEADERS, chain_events, parse_last_event_id
from services.gateway.submit import start_chain

__all__ = ["router", "with_seed", "without_seed"]

router = APIRouter(tags=["chains"])

_SEED_FLAG = re.compile(r"(?<!\S)(?:--seed|-s)(?:=\S*|\s+(?:\"[^\"]*\"|'[^']*'|\S+))?(?=\s|$)")
_HASH_CACHE = 10_000
_EVENTS_DOC = {
    200: {
        "description": "text/event-stream. Every event of the chain's log as `id: <stream version>`, `event: <type>`, "
                       "`data: <envelope JSON>`, then live ones; resumable with `Last-Event-ID` (or ?last_event_id=). "
                       "Live only, without an id: `progress` {step, attempt, value, max, queue_position}, `queue` "
                       "{position}, `preview` {step, attempt, data_url}. `: ping` comments keep it open; the stream "
                       "ends after the chain's terminal event (completed, failed, refused, cancelled).",
        "content": {"text/event-stream": {}},
    }
}


def with_seed(request_text: str, seed: int) -> str:
    """The request with its seed pinned: any `--seed`/`-s` flag replaced by `--seed <seed>`."""
    return f"{without_seed(request_text)} --seed {seed}"


def without_seed(request_text: str) -> str:
    """The request without any `--seed`/`-s` flag, so the planner draws its seeds."""
    return " ".join(_SEED_FLAG.sub(" ", request_text).split())


def chain_body(record: ChainRecord) -> dict[str, Any]:
    summary, audit, request = record.summary, record.audit, record.request
    steps = []
    for step, folded in zip(summary.steps, audit.steps, strict=True):
        kept = folded.kept
        steps.append({
            "index": step.index, "kind": step.kind, "state": step.state, "seed": step.seed,
            "prompt": folded.prompt, "model": folded.model,
            "score": step.score, "accepted_attempt": step.accepted_attempt,
            "image": image_links(kept.image) if kept else None,
            "attempts": [{"attempt": a.attempt, "seed": a.seed, "score": a.score, "decision": a.decision,
                          "reason": a.reason, "rung": a.rung, "image": image_links(a.image)}
                         for a in folded.attempts],
        })
    chain_id = str(record.chain_id)
    return {
        "chain_id": chain_id,
        "status": summary.status if request is not None else "queued",
        "character_id": request.character_id if request else None,
        "request_text": request.request_text if request else None,
        "parent_chain_id": str(request.parent_chain_id) if request and request.parent_chain_id else None,
        "branch_from_step": request.branch_from_step if request else None,
        "batch_id": str(request.batch_id) if request and request.batch_id else None,
        "variant_index": request.variant_index if request else 0,
        "threshold": summary.threshold,
        "threshold_source": audit.threshold_source,
        "planner": audit.planner,
        "planner_note": audit.planner_note,
        "score": summary.score,
        "steps": steps,
        "final_image": image_links(audit.final_image),
        "outcome": summary.outcome,
        "version": record.version,
        "links": {"events": f"/chains/{chain_id}/events", "audit": f"/chains/{chain_id}/audit",
                  "job": f"/chat/job/{chain_id}"},
    }


@router.get("/chains/{chain_id}", summary="A chain's current state, step by step")
async def get_chain(chain_id: UUID, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    return chain_body(await gateway.chains.load(chain_id, user))


@router.get("/chains/{chain_id}/events", responses=_EVENTS_DOC, response_class=StreamingResponse,
            summary="The chain's events as Server-Sent Events: the log so far, then live")
async def get_chain_events(
    chain_id: UUID,
    user: UserDep,
    gateway: GatewayDep,
    last_event_id: int | None = Query(default=None, ge=0, le=MAX_EVENT_ID, description="resume after this stream version"),
    last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID"),
) -> StreamingResponse:
    await gateway.chains.check_owner(chain_id, user)
    stream = chain_stream(chain_id)
    # Subscribe before the log is read, so an event committed in between arrives live.
    listener = gateway.hub.subscribe(stream)
    settings = gateway.settings
    body = chain_events(stream, parse_last_event_id(last_event_id_header, last_event_id), hub=gateway.hub,
                        store=gateway.store, heartbeat_s=settings.gateway_sse_heartbeat_s,
                        preview_max_chars=settings.gateway_preview_max_chars, listener=listener,
                        heads=gateway.heads)
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS,
                             background=BackgroundTask(gateway.hub.unsubscribe, listener))


@router.get("/chains/{chain_id}/audit", summary="The chain's whole record: every attempt, seed, score and decision")
async def get_audit(chain_id: UUID, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    record = await gateway.chains.load(chain_id, user)
    return jsonable_encoder(record.audit)


@router.post("/chains/{chain_id}/rerender", response_model=ChainStarted, status_code=202,
             summary="Make the chain again: same request, same character and input, seeds pinned (or new ones)")
async def rerender(chain_id: UUID, user: UserDep, gateway: GatewayDep,
                   fresh_seed: bool = Query(default=False, description="draw new seeds: another take of the same "
                                                                       "request (the page's Regenerate)"),
                   ) -> dict[str, Any]:
    # The new chain is the caller's: a key re-renders its nicks' chains acting for the nick (X-Likeness-Nick).
    record = await gateway.chains.load(chain_id, user, own=True)
    request, plan = record.request, record.plan
    if fresh_seed and request is not None:
        # Another take: the request without its seed, so the planner draws new ones; input and branch kept.
        again = RequestChain(chain_id=uuid.uuid4(), character_id=request.character_id, user_id=user.id,
                             request_text=without_seed(request.request_text), reference_image=request.reference_image,
                             mode=request.mode, parent_chain_id=request.parent_chain_id,
                             branch_from_step=request.branch_from_step, input_image=request.input_image)
        return await start_chain(gateway, user, again, origin="rerender", source_chain_id=chain_id,
                                 note="the same request with new seeds")
    if request is None or plan is None:
        raise Conflict(f"chain {chain_id} has no plan to re-render (it is {record.summary.status})",
                       code="not_planned")
    base = plan.steps[0].seed
    # The requests of a POST /batch each drew their own base seed: only `--count` variants share one.
    if request.variant_index and request.batch_id is not None and request.batch_kind == "count":
        # Only the first chain of a --count batch starts at the base seed; the others derive theirs from it.
        first = await gateway.chains.load(request.batch_id, user)
        if first.plan is None:
            raise Conflict("the first chain of this batch has no plan, so its seeds are unknown", code="not_planned")
        base = first.plan.steps[0].seed
    text = with_seed(request.request_text, base)
    # A request of a POST /batch is made again on its own, like a request sent alone.
    variant, count = (request.variant_index, request.variant_count) if request.batch_kind == "count" else (0, 1)
    again = RequestChain(chain_id=uuid.uuid4(), character_id=request.character_id, user_id=user.id, request_text=text,
                         reference_image=request.reference_image, mode=request.mode,
                         parent_chain_id=request.parent_chain_id, branch_from_step=request.branch_from_step,
                         variant_index=variant, variant_count=count, input_image=request.input_image)
    note = (f"re-planned from the same request with --seed {base}: the rule-based planner gives the same steps, "
            "seeds and templates; an LLM planner may word the prompts differently")
    return await start_chain(gateway, user, again, origin="rerender", source_chain_id=chain_id, note=note)


@router.get("/chains/{chain_id}/compare", summary="Two chains side by side: per-step seeds, scores, perceptual hashes")
async def compare(chain_id: UUID, user: UserDep, gateway: GatewayDep,
                  other: Annotated[UUID, Query(alias="with", description="the chain to compare with")],
                  ) -> dict[str, Any]:
    left, right = await gateway.chains.load(chain_id, user), await gateway.chains.load(other, user)
    left_steps, right_steps = await _step_facts(gateway, left), await _step_facts(gateway, right)
    rows = []
    for index in range(max(len(left_steps), len(right_steps))):
        a = left_steps[index] if index < len(left_steps) else None
        b = right_steps[index] if index < len(right_steps) else None
        both = a is not None and b is not None
        rows.append({
            "index": index, "this": a, "other": b,
            "same_seed": both and a["seed"] == b["seed"],
            "same_image": both and a["sha256"] is not None and a["sha256"] == b["sha256"],
            "hash_distance": hamming(a["dhash"], b["dhash"]) if both and a["dhash"] and b["dhash"] else None,
            "score_delta": round(b["score"] - a["score"], 3) if both and a["score"] is not None
            and b["score"] is not None else None,
        })
    return {"chain_id": str(chain_id), "with": str(other), "status": [left.summary.status, right.summary.status],
            "steps": rows, "hash": "dHash, 64 bits; distance in differing bits (0 identical, <= 10 near)"}


async def _step_facts(gateway: Gateway, record: ChainRecord) -> list[dict[str, Any]]:
    facts = []
    for step in record.summary.steps:
        sha = step.sha256
        facts.append({"kind": step.kind, "seed": step.seed, "score": step.score, "sha256": sha,
                      "attempts": step.attempts, "dhash": await _dhash(gateway, sha) if sha else None})
    return facts


async def _dhash(gateway: Gateway, sha256: str) -> str:
    cached = gateway.hashes.get(sha256)
    if cached is None:
        cached = await asyncio.to_thread(dhash, await gateway.blobs.get(sha256))
        gateway.hashes[sha256] = cached
        while len(gateway.hashes) > _HASH_CACHE:
            gateway.hashes.popitem(last=False)
    return cached


@router.post("/chains/{chain_id}/branch", response_model=ChainStarted, status_code=202,
             summary="A new chain that edits the accepted image of one step of this chain")
async def branch(chain_id: UUID, body: BranchRequest, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    parent = await gateway.chains.load(chain_id, user, own=True)
    request, plan = parent.request, parent.plan
    if request is None or plan is None:
        raise Conflict(f"chain {chain_id} has no steps yet to branch from", code="not_planned")
    if request.mode == "t2i":
        raise Conflict(f"chain {chain_id} drew a picture from text: it has no character whose face a branch could "
                       "keep; ask for a new picture instead", code="no_character")
    if body.from_step >= len(plan.steps):
        raise Unprocessable(f"from_step must be 0..{len(plan.steps) - 1}: chain {chain_id} has {len(plan.steps)} "
                            "steps", code="invalid_step")
    kept = parent.audit.steps[body.from_step].kept
    if kept is None:
        raise Conflict(f"step {body.from_step} of chain {chain_id} has no accepted image yet; branch from a step "
                       "that was accepted", code="step_not_accepted")
    child = RequestChain(chain_id=uuid.uuid4(), character_id=request.character_id, user_id=user.id,
                         request_text=body.request, reference_image=request.reference_image,
                         parent_chain_id=chain_id, branch_from_step=body.from_step, input_image=kept.image)
    return await start_chain(gateway, user, child, origin="branch", source_chain_id=chain_id)


@router.post("/chains/{chain_id}/cancel", status_code=202, summary="Stop a running chain after the step in flight")
async def cancel(chain_id: UUID, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    record = await gateway.chains.load(chain_id, user)
    if record.finished:
        raise Conflict(f"chain {chain_id} has already ended ({record.summary.status})", code="chain_finished")
    command = CancelChain(chain_id=chain_id, reason="cancelled by its owner", requested_by=user.id)
    await gateway.commander.send(gateway.commander.envelope(command, stream=chain_stream(chain_id), actor=user.id),
                                 command)
    return {"chain_id": str(chain_id), "status": "cancelling", "events_url": f"/chains/{chain_id}/events"}
