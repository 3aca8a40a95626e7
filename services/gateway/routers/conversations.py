"""Conversations kept on the server: the list of one's own, their messages page by page, hiding one."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Query, Response

from services.gateway.auth import User
from services.gateway.context import Gateway
from services.gateway.deps import GatewayDep, UserDep
from services.gateway.errors import NotFound
from services.gateway.readmodels.hidden import hide_conversation

__all__ = ["router"]

router = APIRouter(tags=["conversations"])

# Anyone may address any conversation id, and the chat service records the refusal there: a message
# refused to someone else is not the owner's.
_VISIBLE = "(m.sender IS NULL OR m.sender = c.user_id)"
_PREVIEW_CHARS = 140
# Read your writes: a conversation started a moment ago may not be in the views yet.
_FRESH_WAIT_S = 2.0

_LIST = f"""
    SELECT c.conversation_id, c.character_id, c.started_at, n.message_count,
           l.message_id, l.role, l.text, l.refused_reason, l.created_at AS last_message_at
    FROM conversations_view c
    CROSS JOIN LATERAL (SELECT count(*) AS message_count FROM messages_view m
                        WHERE m.conversation_id = c.conversation_id AND {_VISIBLE}) n
    LEFT JOIN LATERAL (SELECT m.message_id, m.role, m.text, m.refused_reason, m.created_at FROM messages_view m
                       WHERE m.conversation_id = c.conversation_id AND {_VISIBLE}
                       ORDER BY m.seq DESC LIMIT 1) l ON true
    WHERE c.user_id = $1 AND ($2::text IS NULL OR c.character_id = $2)
      AND NOT EXISTS (SELECT 1 FROM hidden_conversations h WHERE h.conversation_id = c.conversation_id)
    ORDER BY coalesce(l.created_at, c.started_at) DESC, c.conversation_id
    LIMIT $3 OFFSET $4
"""

_OWNED = """
    SELECT c.conversation_id, c.character_id FROM conversations_view c
    WHERE c.conversation_id = $1 AND c.user_id = $2
      AND NOT EXISTS (SELECT 1 FROM hidden_conversations h WHERE h.conversation_id = c.conversation_id)
"""

_PAGE = f"""
    SELECT m.* FROM messages_view m JOIN conversations_view c USING (conversation_id)
    WHERE m.conversation_id = $1 AND {_VISIBLE} AND ($2::bigint IS NULL OR m.seq < $2)
    ORDER BY m.seq DESC LIMIT $3
"""


@router.get("/conversations", summary="Your conversations, latest activity first")
async def list_conversations(
    user: UserDep, gateway: GatewayDep,
    character_id: str | None = Query(default=None, max_length=200, description="only those with this character"),
    limit: int = Query(default=50, ge=1, le=200), offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    await gateway.projector.sync(1.0)
    rows = await gateway.db.fetch(_LIST, user.id, character_id, limit, offset)
    return [{
        "conversation_id": str(r["conversation_id"]), "character_id": r["character_id"],
        "started_at": r["started_at"].isoformat(),
        "last_message_at": None if r["last_message_at"] is None else r["last_message_at"].isoformat(),
        "message_count": r["message_count"],
        "last_message": None if r["message_id"] is None else {
            "message_id": str(r["message_id"]), "role": r["role"], "preview": _preview(r["text"]),
            "refused": r["refused_reason"] is not None},
        "messages_url": f"/conversations/{r['conversation_id']}/messages",
    } for r in rows]


@router.get("/conversations/{conversation_id}/messages",
            summary="A conversation's messages, newest page first, oldest to newest within a page")
async def conversation_messages(
    conversation_id: UUID, user: UserDep, gateway: GatewayDep,
    limit: int = Query(default=50, ge=1, le=200),
    before: int | None = Query(default=None, ge=1, le=2**62,
                               description="the `before` cursor of the newer page: only messages older than it"),
) -> dict[str, Any]:
    owned = await _owned(gateway, conversation_id, user)
    await gateway.projector.sync(1.0)
    # One more than asked: whether an older page exists, without counting.
    rows = await gateway.db.fetch(_PAGE, conversation_id, before, limit + 1)
    page = list(reversed(rows[:limit]))
    older = len(rows) > limit
    cursor = page[0]["seq"] if older else None
    return {
        "conversation_id": str(conversation_id), "character_id": owned["character_id"],
        "messages": [_message(r) for r in page],
        "before": cursor,
        "next": None if cursor is None else
        f"/conversations/{conversation_id}/messages?{urlencode({'limit': limit, 'before': cursor})}",
    }


@router.delete("/conversations/{conversation_id}", status_code=204, response_class=Response,
               summary="Hide a conversation of yours (the log keeps its events)")
async def delete_conversation(conversation_id: UUID, user: UserDep, gateway: GatewayDep) -> Response:
    """Afterwards it is gone from the list, its messages are a 404 and the chat refuses it. Hiding one
    already hidden answers 204 again."""
    hidden_before = await gateway.db.fetchval(
        "SELECT user_id FROM hidden_conversations WHERE conversation_id = $1", conversation_id)
    if hidden_before != user.id:
        await _owned(gateway, conversation_id, user)
        await hide_conversation(gateway.db, conversation_id, user.id)
    return Response(status_code=204)


async def _owned(gateway: Gateway, conversation_id: UUID, user: User) -> asyncpg.Record:
    """The conversation if it is the user's and not hidden; else 404, as for one that does not exist."""
    found = await gateway.db.fetchrow(_OWNED, conversation_id, user.id)
    if found is None:
        await gateway.projector.sync(_FRESH_WAIT_S)
        found = await gateway.db.fetchrow(_OWNED, conversation_id, user.id)
    if found is None:
        raise NotFound(f"no conversation {conversation_id} of yours: GET /conversations lists them",
                       code="conversation_not_found")
    return found


def _preview(text: str | None) -> str | None:
    if text is None or len(text) <= _PREVIEW_CHARS:
        return text
    return text[:_PREVIEW_CHARS - 1].rstrip() + "…"


def _message(r: asyncpg.Record) -> dict[str, Any]:
    common = {"message_id": str(r["message_id"]), "role": r["role"], "text": r["text"],
              "created_at": r["created_at"].isoformat(), "seq": r["seq"],
              "chain_id": None if r["chain_id"] is None else str(r["chain_id"])}
    if r["role"] == "character":
        return {**common, "in_reply_to": None if r["in_reply_to"] is None else str(r["in_reply_to"]),
                "offline": r["offline"], "model": r["model"], "needs_reference": r["needs_reference"],
                "login_required": r["login_required"]}
    return {**common, "refused": r["refused_reason"] is not None, "refused_reason": r["refused_reason"],
            "refused_rule": r["refused_rule"], "picked": r["picked"],
            "picked_chain_id": None if r["picked_chain_id"] is None else str(r["picked_chain_id"])}
