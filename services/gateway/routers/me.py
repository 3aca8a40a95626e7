"""A user's own things: account, gallery, pictures, edit tree, images (owner only), and what chatting cost."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from services.gateway.blob_urls import IMAGE_REDIRECT, presigned_redirect
from services.gateway.deps import DatabaseDep, GatewayDep, ImageUserDep, UserDep
from services.gateway.errors import NotFound
from services.gateway.images import thumbnail
from services.gateway.readmodels.hidden import hide_picture
from services.gateway.readmodels.pictures import PICTURES, image_urls, picture_entry
from services.gateway.readmodels.tree import build_tree
from services.gateway.readmodels.view_rows import chain_from_row
from services.gateway.schemas import Me

__all__ = ["router"]

router = APIRouter(tags=["me"])

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IMMUTABLE = "private, max-age=31536000, immutable"
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
# Sync the views before answering "not yours" for an image made a moment ago.
_FRESH_WAIT_S = 2.0


@router.get("/me", response_model=Me, summary="Who you are and how many pictures you may still make")
async def me(user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    if user.nick is not None:
        # A nick's limit is its pictures per window (LIKENESS_GATEWAY_NICK_IMAGE_LIMIT), counted in that window.
        accounts = gateway.accounts
        used, limit = await accounts.nick_pictures_in_window(user.id), accounts.nick_image_limit
        return {"user_id": user.id, "kind": user.kind, "images_used": used, "image_limit": limit,
                "images_left": None if limit is None else max(0, limit - used)}
    kind = await gateway.accounts.kind_of(user.id)
    used = await gateway.accounts.images_used(user.id)
    limit = gateway.settings.gateway_anonymous_image_limit if kind == "anonymous" else None
    return {"user_id": user.id, "kind": kind, "images_used": used, "image_limit": limit,
            "images_left": None if limit is None else max(0, limit - used)}


@router.get("/me/images", summary="Your gallery: the final and step images of your chains, newest first")
async def my_images(user: UserDep, gateway: GatewayDep, limit: int = Query(default=200, ge=1, le=1000),
                    offset: int = Query(default=0, ge=0)) -> list[dict[str, Any]]:
    await gateway.projector.sync(1.0)
    rows = await gateway.db.fetch(
        "SELECT chain_id, role, step, sha256, media_type, width, height, bytes, kind, score, created_at "
        "FROM images_view i WHERE user_id = $1 AND role IN ('final', 'step') "
        "AND NOT EXISTS (SELECT 1 FROM hidden_pictures h WHERE h.chain_id = i.chain_id) "
        "ORDER BY created_at DESC, chain_id, role, step DESC LIMIT $2 OFFSET $3", user.id, limit, offset)
    return [{
        "sha256": r["sha256"], "chain_id": str(r["chain_id"]), "role": r["role"],
        "step": None if r["role"] == "final" else r["step"], "kind": r["kind"], "score": r["score"],
        "media_type": r["media_type"], "width": r["width"], "height": r["height"], "bytes": r["bytes"],
        **image_urls(r["sha256"]), "created_at": r["created_at"].isoformat(),
    } for r in rows]


@router.get("/me/pictures", summary="Your pictures, one per finished chain, newest first, with their steps")
async def my_pictures(user: UserDep, gateway: GatewayDep,
                      character_id: str | None = Query(default=None, max_length=200,
                                                       description="only the pictures of this character"),
                      limit: int = Query(default=50, ge=1, le=200),
                      offset: int = Query(default=0, ge=0)) -> list[dict[str, Any]]:
    await gateway.projector.sync(1.0)
    rows = await gateway.db.fetch(PICTURES, user.id, character_id, limit, offset)
    return [picture_entry(r) for r in rows]


@router.delete("/me/pictures/{chain_id}", status_code=204, response_class=Response,
               summary="Hide a picture of yours from your pictures and images (the log keeps its chain)")
async def hide_my_picture(chain_id: UUID, user: UserDep, gateway: GatewayDep) -> Response:
    """`/chains/{id}`, its audit and its images still answer; hiding it again answers 204 again."""
    await gateway.chains.check_owner(chain_id, user)
    await hide_picture(gateway.db, chain_id, user.id)
    return Response(status_code=204)


@router.get("/me/tree", summary="Your chains as a tree: each chain under the one it was branched from")
async def my_tree(user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    await gateway.projector.sync(1.0)
    rows = await gateway.db.fetch("SELECT * FROM chains_view WHERE user_id = $1", user.id)
    return {"chains": build_tree([chain_from_row(row) for row in rows])}


@router.get("/images/{sha256}", summary="An image of yours (immutable); ?thumb=1 for a small WebP",
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
                       307: IMAGE_REDIRECT})
async def image(sha256: str, request: Request, user: ImageUserDep, gateway: GatewayDep,
                thumb: bool = Query(default=False), download: bool = Query(default=False)) -> Response:
    media_type = await _owned_media_type(gateway, user.id, sha256)
    side = gateway.settings.gateway_thumb_side
    etag = f'"{sha256}-t{side}"' if thumb else f'"{sha256}"'
    headers = {"Cache-Control": _IMMUTABLE, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if thumb:
        key = f"{sha256}:{side}"
        data = gateway.thumbs.get(key)
        if data is None:
            data = await asyncio.to_thread(thumbnail, await gateway.blobs.get(sha256), side)
            gateway.thumbs.put(key, data)
        media_type = "image/webp"
    else:
        filename = f"likeness-{sha256[:12]}.{_EXTENSIONS.get(media_type, 'img')}"
        # Thumbnails are made here, so only the original can be served by the store itself.
        redirect = await presigned_redirect(gateway, sha256, filename=filename if download else None)
        if redirect is not None:
            return redirect
        data = await gateway.blobs.get(sha256)
    if download:
        headers["Content-Disposition"] = (f'attachment; filename="likeness-{sha256[:12]}'
                                          f'{"-thumb" if thumb else ""}.{_EXTENSIONS.get(media_type, "img")}"')
    return Response(data, media_type=media_type, headers=headers)


async def _owned_media_type(gateway: Any, user_id: str, sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise NotFound("no such image: an image id is the 64 hex digits of its sha256", code="image_not_found")
    query = """
        SELECT media_type FROM images_view WHERE user_id = $1 AND sha256 = $2
        UNION ALL
        SELECT reference->>'media_type' FROM characters_view WHERE owner = $1 AND reference_sha256 = $2
        UNION ALL
        SELECT reference->>'media_type' FROM user_references_view WHERE user_id = $1 AND reference_sha256 = $2
        LIMIT 1
    """
    found = await gateway.db.fetchval(query, user_id, sha256)
    if found is None:
        await gateway.projector.sync(_FRESH_WAIT_S)
        found = await gateway.db.fetchval(query, user_id, sha256)
    if found is None:
        raise NotFound("no image with that sha256 among yours", code="image_not_found")
    return found


_REPLY_COST = (
    "SELECT model, count(*) AS replies, sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion, "
    "sum(cost_usd) AS cost, count(*) FILTER (WHERE offline) AS offline, "
    "count(*) FILTER (WHERE tokens_estimated) AS estimated FROM replies_view {} GROUP BY model ORDER BY model")
_PLAN_COST = (
    "SELECT llm_usage->>'model' AS model, count(*) AS plans, sum((llm_usage->>'calls')::bigint) AS calls, "
    "sum((llm_usage->>'prompt_tokens')::bigint) AS prompt, sum((llm_usage->>'completion_tokens')::bigint) AS completion, "
    "sum((llm_usage->>'cost_usd')::float8) AS cost, "
    "count(*) FILTER (WHERE (llm_usage->>'tokens_estimated')::boolean) AS estimated "
    "FROM chains_view WHERE llm_usage IS NOT NULL {} GROUP BY 1 ORDER BY 1")


@router.get("/cost", summary="Language-model tokens and money, chat replies and planning, per model: yours and "
                             "everyone's")
async def cost(user: UserDep, gateway: GatewayDep, db: DatabaseDep) -> dict[str, Any]:
    """`user`/`overall`: chat replies; `planning`: the planner's model calls per chain; `total_cost_usd`: both.
    Token counts a server did not report are estimated (about four characters a token) and counted in
    `estimated_replies` / `estimated_plans`."""
    await gateway.projector.sync(1.0)
    replies_mine = _reply_usage(await db.fetch(_REPLY_COST.format("WHERE user_id = $1"), user.id))
    replies_all = _reply_usage(await db.fetch(_REPLY_COST.format("")))
    plans_mine = _plan_usage(await db.fetch(_PLAN_COST.format("AND user_id = $1"), user.id))
    plans_all = _plan_usage(await db.fetch(_PLAN_COST.format("")))
    return {
        "currency": "USD", "user": replies_mine, "overall": replies_all,
        "planning": {"user": plans_mine, "overall": plans_all},
        "total_cost_usd": {"user": round(replies_mine["total"]["cost_usd"] + plans_mine["total"]["cost_usd"], 6),
                           "overall": round(replies_all["total"]["cost_usd"] + plans_all["total"]["cost_usd"], 6)},
    }


_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _reply_usage(rows: list[Any]) -> dict[str, Any]:
    return _totals([{"model": r["model"], "replies": r["replies"], "offline_replies": r["offline"],
                     "estimated_replies": r["estimated"], **_tokens(r)} for r in rows],
                   ("replies", "offline_replies", "estimated_replies", *_TOKENS))


def _plan_usage(rows: list[Any]) -> dict[str, Any]:
    return _totals([{"model": r["model"], "plans": r["plans"], "calls": int(r["calls"] or 0),
                     "estimated_plans": r["estimated"], **_tokens(r)} for r in rows],
                   ("plans", "calls", "estimated_plans", *_TOKENS))


def _tokens(row: Any) -> dict[str, Any]:
    prompt, completion = int(row["prompt"] or 0), int(row["completion"] or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "cost_usd": round(float(row["cost"] or 0), 6)}


def _totals(models: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    total = {key: sum(m[key] for m in models) for key in keys}
    total["cost_usd"] = round(sum(m["cost_usd"] for m in models), 6)
    return {"models": models, "total": total}
