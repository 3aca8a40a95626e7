"""A chain as the API shows it, read straight from its stream (no projection lag), and who owns it.

A chain's owner is the `user_id` of its `ChainRequested`; before the planner has recorded that,
the gateway's own `chain_submissions` row says whose request it is (the job is "queued"). A key's
user sees its nicks' chains too (`User.sees`), unless `own` asks for the caller's own only (what a new
chain is made from is recorded as made by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any
from uuid import UUID

from contracts import (
    CHAIN_ENDS,
    REGISTRY,
    ChainPlanned,
    ChainRequested,
    ContractError,
    ImageRef,
    Message,
)
from contracts.audit import ChainAudit
from contracts.streams import chain_stream
from services.gateway.accounts import Accounts, Submission
from services.gateway.auth import User
from services.gateway.db import Database
from services.gateway.errors import NotFound
from services.gateway.readmodels.chains import ChainSummary, summarize
from services.runtime.eventstore import EventStore

__all__ = ["ChainReader", "ChainRecord", "image_links", "job_body"]


def image_links(image: ImageRef | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {**image.model_dump(), "url": f"/images/{image.sha256}", "thumb_url": f"/images/{image.sha256}?thumb=1",
            "download_url": f"/images/{image.sha256}?download=1"}


@dataclass(frozen=True)
class ChainRecord:
    """A chain's events (typed, with versions and times) and what they fold to."""

    chain_id: UUID
    messages: tuple[tuple[int, Message, datetime], ...]
    submission: Submission | None = None

    @property
    def request(self) -> ChainRequested | None:
        return next((m for _, m, _ in self.messages if isinstance(m, ChainRequested)), None)

    @property
    def plan(self) -> ChainPlanned | None:
        return next((m for _, m, _ in self.messages if isinstance(m, ChainPlanned)), None)

    @property
    def owner(self) -> str | None:
        request = self.request
        if request is not None:
            return request.user_id
        return None if self.submission is None else self.submission.user_id

    @property
    def version(self) -> int:
        return self.messages[-1][0] if self.messages else 0

    @cached_property
    def audit(self) -> ChainAudit:
        """The chain's one fold, made once per record (the summary is a view of it)."""
        audit = ChainAudit(str(self.chain_id))
        for version, message, at in self.messages:
            audit.apply(message, at, version)
        return audit

    @cached_property
    def summary(self) -> ChainSummary:
        return summarize(self.chain_id, self.audit)

    @property
    def finished(self) -> bool:
        return any(m.type in CHAIN_ENDS for _, m, _ in self.messages)


class ChainReader:
    """Loads chains from the log for one user: anything not theirs is NotFound."""

    def __init__(self, store: EventStore, db: Database, accounts: Accounts) -> None:
        self._store, self._db, self._accounts = store, db, accounts

    async def owner(self, chain_id: UUID) -> str | None:
        first = await self._db.first_event(chain_stream(chain_id))
        if first is not None and first[0] == "chain.requested":
            return first[1].get("user_id")
        submission = await self._accounts.submission(chain_id)
        return None if submission is None else submission.user_id

    async def check_owner(self, chain_id: UUID, user: User) -> None:
        if not user.sees(await self.owner(chain_id)):
            raise _not_found(chain_id)

    async def load(self, chain_id: UUID, user: User, *, own: bool = False) -> ChainRecord:
        """The chain if `user` may see it (its events, or its pending request); with `own`, only if theirs."""
        messages = []
        for recorded in await self._store.read_stream(chain_stream(chain_id)):
            try:
                messages.append((recorded.envelope.seq or 0, recorded.envelope.open(REGISTRY), recorded.recorded_at))
            except ContractError:
                continue
        record = ChainRecord(chain_id, tuple(messages))
        if record.request is None:
            record = ChainRecord(chain_id, record.messages, await self._accounts.submission(chain_id))
        if not (record.owner == user.id if own else user.sees(record.owner)):
            raise _not_found(chain_id)
        return record


def _not_found(chain_id: UUID) -> NotFound:
    return NotFound(f"no chain {chain_id} of yours: check the id (it is the job id POST /chat/generate-image "
                    "returned)", code="chain_not_found")


def job_body(record: ChainRecord, batch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Status, progress and result of a picture job (its id is the chain id); `batch` when it is the first
    chain of a batch."""
    summary = record.summary
    request = record.request
    submission = record.submission
    total = len(summary.steps)
    done = sum(1 for s in summary.steps if s.state == "accepted")
    current = next((s for s in summary.steps if s.state != "accepted"), None)
    final = record.audit.final_image
    status = summary.status if request is not None else "queued"
    return {
        "job_id": str(record.chain_id),
        "chain_id": str(record.chain_id),
        "status": status,
        "done": status in ("completed", "failed", "refused", "cancelled"),
        # A text-to-image job has none (its submission row holds "").
        "character_id": request.character_id if request else (submission.character_id or None if submission else None),
        "request_text": request.request_text if request else (submission.request_text if submission else None),
        "progress": {
            "steps_total": total,
            "steps_done": done,
            "step": None if current is None else current.index,
            "attempt": None if current is None else current.attempts or None,
            "fraction": 1.0 if status == "completed" else (round(done / total, 3) if total else 0.0),
        },
        "score": summary.score,
        "result": image_links(final),
        "image_url": None if final is None else f"/images/{final.sha256}",
        "reason": summary.outcome if status in ("failed", "refused", "cancelled") else None,
        "version": record.version,
        "events_url": f"/chains/{record.chain_id}/events",
        "chain_url": f"/chains/{record.chain_id}",
        "batch": batch,
    }
