"""The projector: tails the log (`EventStore.read_all`, gap-safe) and keeps the `*_view` tables.

Each pass locks the checkpoint row, reads the next events after it, folds them with the pure
read models and writes the rows and the new checkpoint in one transaction: a crash in between
leaves the checkpoint where it was and the next pass writes the same rows again (every write is
an idempotent upsert, folded by stream version). The row lock lets every gateway replica run a
projector; their passes simply take turns. `rebuild` empties the views and the checkpoint, and
the next passes fold the whole log again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from uuid import UUID

import asyncpg

from contracts import (
    REGISTRY,
    CharacterReferenceSet,
    ContractError,
    ConversationStarted,
    Message,
)
from contracts.audit import ChainAudit
from contracts.streams import REFERENCE_STREAM_PREFIX, chain_stream
from services.gateway.db import Database
from services.gateway.readmodels import view_rows
from services.gateway.readmodels.chains import ChainSummary, ImageRow, images_of, summarize
from services.gateway.readmodels.characters import CharacterView, evolve_character
from services.gateway.readmodels.messages import CONVERSATION_EVENTS, project_message
from services.gateway.readmodels.view_rows import character_from_row
from services.runtime.eventstore import EventStore, RecordedEvent
from services.runtime.faults import Outage, is_infrastructure_failure

__all__ = ["VIEWS", "Projector"]

log = logging.getLogger(__name__)

VIEWS = ("chains_view", "images_view", "characters_view", "user_references_view", "conversations_view",
         "replies_view", "messages_view")


class Projector:
    """Keeps the read models up to date; `poke` after something new reached NATS, `sync` to read your writes."""

    def __init__(self, db: Database, store: EventStore, *, name: str = "gateway", batch: int = 500,
                 poll_s: float = 1.0, debounce_s: float = 0.05) -> None:
        self._db, self._store, self._name = db, store, name
        self._batch, self._poll_s, self._debounce_s = batch, poll_s, debounce_s
        self._wake = asyncio.Event()
        self._pass = asyncio.Lock()
        self.position = 0

    def poke(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Project until cancelled (or `stop` is set); a failing pass is logged and retried."""
        outage = Outage("projector", log)
        while stop is None or not stop.is_set():
            self._wake.clear()
            try:
                # Let a burst of events gather into one pass; readers who cannot wait call `sync`.
                await asyncio.sleep(self._debounce_s)
                moved = await self.run_once()
                outage.over()
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the views for the life of the process
                if is_infrastructure_failure(exc):
                    outage.failed(exc)  # one line when the database goes, one when it is back
                else:
                    log.exception("projector pass failed; retrying")
                moved = 0
            if moved == 0:
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def run_once(self) -> int:
        """Fold the next batch of events; returns how many were read."""
        async with self._pass:
            async with self._db.transaction() as conn:
                position = await self._checkpoint(conn)
                records = await self._store.read_all(after_position=position, limit=self._batch)
                if records:
                    await _apply(conn, self._store, records)
                    position = records[-1].global_position
                    await conn.execute("UPDATE projector_checkpoints SET position = $2, updated_at = now() "
                                       "WHERE name = $1", self._name, position)
            # Only once committed: `sync` callers read the views as soon as they see this position.
            self.position = position
            return len(records)

    async def sync(self, timeout_s: float = 2.0) -> bool:
        """Bring the views up to every event committed before this call; False if that took too long."""
        target = await self._db.head_position()
        deadline = time.monotonic() + timeout_s
        while self.position < target:
            if await self.run_once() == 0:
                if time.monotonic() > deadline:
                    return False
                # Held back behind a transaction still open (gap safety): it commits in a moment.
                await asyncio.sleep(0.01)
            elif time.monotonic() > deadline:
                return self.position >= target
        return True

    async def rebuild(self) -> None:
        """Empty the views and start again from the first event."""
        async with self._pass, self._db.transaction() as conn:
            await conn.execute(f"TRUNCATE {', '.join(VIEWS)}")
            await conn.execute("DELETE FROM projector_checkpoints WHERE name = $1", self._name)
            self.position = 0

    async def _checkpoint(self, conn: asyncpg.Connection) -> int:
        query = "SELECT position FROM projector_checkpoints WHERE name = $1 FOR UPDATE"
        position = await conn.fetchval(query, self._name)
        if position is None:
            await conn.execute("INSERT INTO projector_checkpoints (name, position) VALUES ($1, 0) "
                               "ON CONFLICT (name) DO NOTHING", self._name)
            position = await conn.fetchval(query, self._name)
        return int(position)


async def _apply(conn: asyncpg.Connection, store: EventStore, records: list[RecordedEvent]) -> None:
    parsed: list[tuple[RecordedEvent, Message]] = []
    for record in records:
        family = record.envelope.type.partition(".")[0]
        if family not in ("chain", "character", "chat"):
            continue
        try:
            parsed.append((record, record.envelope.open(REGISTRY)))
        except ContractError as exc:
            # A message this code cannot read must not stall every view behind it.
            log.warning("projector skips %s v%s at %d: %s", record.envelope.type, record.envelope.version,
                        record.global_position, exc)
    chain_events = [(r, m) for r, m in parsed if _chain_id(r) is not None and m.type.startswith("chain.")]
    character_events = [(r, m) for r, m in parsed if r.envelope.stream.startswith("character-")]
    user_references = [(r, m) for r, m in parsed
                       if isinstance(m, CharacterReferenceSet) and m.for_user is not None
                       and r.envelope.stream.startswith(REFERENCE_STREAM_PREFIX)]
    chat_events = [(r, m) for r, m in parsed if isinstance(m, (ConversationStarted, *CONVERSATION_EVENTS))]
    if chain_events:
        await _project_chains(conn, store, chain_events)
    if character_events:
        await _project_characters(conn, character_events)
    if user_references:
        await conn.executemany(view_rows.UPSERT_USER_REFERENCE, [view_rows.user_reference_args(r, m) for r, m in user_references])
    for record, message in chat_events:
        await view_rows.project_chat(conn, record, message)
        await project_message(conn, record, message)


# -- chains and their images ------------------------------------------------------------------------


async def _project_chains(conn: asyncpg.Connection, store: EventStore,
                          events: list[tuple[RecordedEvent, Message]]) -> None:
    """Fold each chain of the batch again from its stream, up to the batch's end, with the one chain fold.

    A chain is a few dozen events, so a re-fold costs one query per batch and no fold state to keep.
    """
    ids = list(dict.fromkeys(_chain_id(r) for r, _ in events))
    in_batch = {r.global_position for r, _ in events}
    streams = await store.read_streams([chain_stream(i) for i in ids], up_to_position=max(in_batch))
    summaries: list[ChainSummary] = []
    images: list[ImageRow] = []
    for chain_id in ids:
        audit = ChainAudit(str(chain_id))
        for record in streams.get(chain_stream(chain_id), ()):
            try:
                message = record.envelope.open(REGISTRY)
            except ContractError:
                continue  # logged when the batch was parsed; the chain folds without it
            audit.apply(message, record.recorded_at, record.envelope.seq)
            if record.global_position in in_batch:
                images.extend(images_of(chain_id, audit, message, record.recorded_at))
        summary = summarize(chain_id, audit)
        # A chain whose request is not in the log (yet) has no owner to list it under.
        if summary.requested:
            summaries.append(summary)
    await conn.executemany(view_rows.UPSERT_CHAIN, [view_rows.chain_args(s) for s in summaries])
    await conn.executemany(view_rows.INSERT_IMAGE, [view_rows.image_args(i) for i in images])


def _chain_id(record: RecordedEvent) -> UUID | None:
    stream = record.envelope.stream
    if not stream.startswith("chain-"):
        return None
    try:
        return UUID(stream.removeprefix("chain-"))
    except ValueError:
        return None


# -- characters -------------------------------------------------------------------------------------


async def _project_characters(conn: asyncpg.Connection, events: list[tuple[RecordedEvent, Message]]) -> None:
    ids = list(dict.fromkeys(r.envelope.stream.removeprefix("character-") for r, _ in events))
    rows = await conn.fetch("SELECT * FROM characters_view WHERE character_id = ANY($1::text[])", ids)
    views = {row["character_id"]: character_from_row(row) for row in rows}
    for record, message in events:
        character_id = record.envelope.stream.removeprefix("character-")
        current = views.get(character_id) or CharacterView(character_id)
        views[character_id] = evolve_character(current, message, record.envelope.seq or 0, record.recorded_at)
    await conn.executemany(view_rows.UPSERT_CHARACTER, [view_rows.character_args(v) for v in views.values() if v.exists])
