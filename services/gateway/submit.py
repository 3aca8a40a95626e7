"""Submitting picture requests: count them against the user's limit, record them, send RequestChain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from contracts import RequestChain
from contracts.streams import chain_stream
from services.gateway.accounts import Submission
from services.gateway.auth import User
from services.gateway.context import Gateway

__all__ = ["start_chain", "start_chains"]


async def start_chain(gateway: Gateway, user: User, request: RequestChain, *, origin: str,
                      source_chain_id: UUID | None = None, note: str | None = None) -> dict[str, Any]:
    """Send the request; the answer (202) names the job, which is the chain id."""
    await start_chains(gateway, user, [request], origin=origin, source_chain_id=source_chain_id)
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


async def start_chains(gateway: Gateway, user: User, requests: Sequence[RequestChain], *, origin: str,
                       source_chain_id: UUID | None = None) -> None:
    """Reserve every request against the user's limits at once (all or none), then send them in order."""
    submissions = [Submission(r.chain_id, user.id, r.character_id or "", r.request_text, origin, source_chain_id)
                   for r in requests]
    await gateway.accounts.reserve_pictures(user.id, user.kind, submissions, nick=user.nick is not None)
    for index, request in enumerate(requests):
        envelope = gateway.commander.envelope(request, stream=chain_stream(request.chain_id), actor=user.id)
        try:
            await gateway.commander.send(envelope, request)
        except Exception:
            # Not sent, so not counted: the user may simply try again (those already sent will run).
            unsent = [r.chain_id for r in requests[index:]]
            await gateway.db.execute("DELETE FROM chain_submissions WHERE chain_id = ANY($1::uuid[])", unsent)
            raise
