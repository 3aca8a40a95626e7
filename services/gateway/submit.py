"""Submitting a picture request: count it against the user's limit, record it, send RequestChain."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from contracts import RequestChain
from contracts.streams import chain_stream
from services.gateway.accounts import Submission
from services.gateway.auth import User
from services.gateway.context import Gateway

__all__ = ["start_chain"]


async def start_chain(gateway: Gateway, user: User, request: RequestChain, *, origin: str,
                      source_chain_id: UUID | None = None, note: str | None = None) -> dict[str, Any]:
    """Send the request; the answer (202) names the job, which is the chain id."""
    submission = Submission(request.chain_id, user.id, request.character_id, request.request_text, origin,
                            source_chain_id)
    await gateway.accounts.reserve_picture(user.id, user.kind, submission)
    stream = chain_stream(request.chain_id)
    envelope = gateway.commander.envelope(request, stream=stream, actor=user.id)
    try:
        await gateway.commander.send(envelope, request)
    except Exception:
        # Not sent, so not counted: the user may simply try again.
        await gateway.db.execute("DELETE FROM chain_submissions WHERE chain_id = $1", request.chain_id)
        raise
    chain_id = str(request.chain_id)
    return {
        "job_id": chain_id,
        "chain_id": chain_id,
        "status": "queued",
        "status_url": f"/chat/job/{chain_id}",
        "wait_url": f"/wait/{chain_id}",
        "events_url": f"/chains/{chain_id}/events",
        "source_chain_id": None if source_chain_id is None else str(source_chain_id),
        "note": note,
    }
