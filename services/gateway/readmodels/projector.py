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
import json
import logging
import time
from contextlib import suppress
from typing import Any
from uuid import UUID

import asyncpg

from contracts import (
    REGISTRY,
    CharacterReferenceSet,
    CharacterReplied,
    ContractError,
    ConversationStarted,
    ImageRef,
    Message,
)
from contracts.streams import REFERENCE_STREAM_PREFIX
from services.gateway.db import Database
from services.gateway.readmodels.chains import (
    ChainSummary,
    ImageRow,
    StepSummary,
    evolve_chain,
    images_of,
)
from services.gateway.readmodels.characters import CharacterView, evolve_character
from services.runtime.eventstore import EventStore, RecordedEvent
from services.runtime.faults import Outage, is_infrastructure_failure

__all__ = ["VIEWS", "Projector", "chain_from_row", "character_from_row"]

log = logging.getLogger(__name__)

VIEWS = ("chains_view", "images_view", "characters_view", "user_references_view", "conversations_view",
         "replies_view")


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
                    await _apply(conn, records)
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


async def _apply(conn: asyncpg.Connection, records: list[RecordedEvent]) -> None:
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
    chat_events = [(r, m) for r, m in parsed if isinstance(m, (ConversationStarted, CharacterReplied))]
    if chain_events:
        await _project_chains(conn, chain_events)
    if character_events:
        await _project_characters(conn, character_events)
    if user_references:
        await conn.executemany(_UPSERT_USER_REFERENCE, [_user_reference_args(r, m) for r, m in user_references])
    for record, message in chat_events:
        await _project_chat(conn, record, message)


# -- chains and their images ------------------------------------------------------------------------


async def _project_chains(conn: asyncpg.Connection, events: list[tuple[RecordedEvent, Message]]) -> None:
    ids = list(dict.fromkeys(_chain_id(r) for r, _ in events))
    rows = await conn.fetch("SELECT * FROM chains_view WHERE chain_id = ANY($1::uuid[])", ids)
    summaries = {row["chain_id"]: chain_from_row(row) for row in rows}
    images: list[ImageRow] = []
    for record, message in events:
        chain_id = _chain_id(record)
        before = summaries.get(chain_id) or ChainSummary(chain_id)
        after = evolve_chain(before, message, record.envelope.seq or 0, record.recorded_at)
        if after is not before:
            images.extend(images_of(after, message, record.recorded_at))
        summaries[chain_id] = after
    # A chain whose request is not in the log (yet) has no owner to list it under.
    changed = [s for s in summaries.values() if s.requested]
    await conn.executemany(_UPSERT_CHAIN, [_chain_args(s) for s in changed])
    await conn.executemany(_INSERT_IMAGE, [_image_args(i) for i in images])


def _chain_id(record: RecordedEvent) -> UUID | None:
    stream = record.envelope.stream
    if not stream.startswith("chain-"):
        return None
    try:
        return UUID(stream.removeprefix("chain-"))
    except ValueError:
        return None


_UPSERT_CHAIN = """
    INSERT INTO chains_view (chain_id, user_id, character_id, status, request_text, parent_chain_id,
                             branch_from_step, batch_id, threshold, final_sha256, steps, outcome, version,
                             created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15)
    ON CONFLICT (chain_id) DO UPDATE SET
        user_id = excluded.user_id, character_id = excluded.character_id, status = excluded.status,
        request_text = excluded.request_text, parent_chain_id = excluded.parent_chain_id,
        branch_from_step = excluded.branch_from_step, batch_id = excluded.batch_id,
        threshold = excluded.threshold, final_sha256 = excluded.final_sha256, steps = excluded.steps,
        outcome = excluded.outcome, version = excluded.version, updated_at = excluded.updated_at
    WHERE chains_view.version < excluded.version
"""

_INSERT_IMAGE = """
    INSERT INTO images_view (chain_id, role, step, attempt, sha256, user_id, media_type, width, height, bytes,
                             kind, score, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT ON CONSTRAINT images_view_pkey DO NOTHING
"""


def _chain_args(s: ChainSummary) -> tuple[Any, ...]:
    return (s.chain_id, s.user_id, s.character_id, s.status, s.request_text, s.parent_chain_id, s.branch_from_step,
            s.batch_id, s.threshold, s.final_sha256, json.dumps([step.to_json() for step in s.steps]), s.outcome,
            s.version, s.created_at, s.updated_at)


def _image_args(i: ImageRow) -> tuple[Any, ...]:
    return (i.chain_id, i.role, i.step, i.attempt, i.image.sha256, i.user_id, i.image.media_type, i.image.width,
            i.image.height, i.image.bytes, i.kind, i.score, i.created_at)


def chain_from_row(row: asyncpg.Record) -> ChainSummary:
    steps = row["steps"]
    steps = json.loads(steps) if isinstance(steps, str) else steps
    return ChainSummary(
        chain_id=row["chain_id"], user_id=row["user_id"], character_id=row["character_id"], status=row["status"],
        request_text=row["request_text"], parent_chain_id=row["parent_chain_id"],
        branch_from_step=row["branch_from_step"], batch_id=row["batch_id"], threshold=row["threshold"],
        final_sha256=row["final_sha256"], steps=tuple(StepSummary.from_json(s) for s in steps),
        outcome=row["outcome"], version=row["version"], created_at=row["created_at"], updated_at=row["updated_at"])


# -- characters -------------------------------------------------------------------------------------


async def _project_characters(conn: asyncpg.Connection, events: list[tuple[RecordedEvent, Message]]) -> None:
    ids = list(dict.fromkeys(r.envelope.stream.removeprefix("character-") for r, _ in events))
    rows = await conn.fetch("SELECT * FROM characters_view WHERE character_id = ANY($1::text[])", ids)
    views = {row["character_id"]: character_from_row(row) for row in rows}
    for record, message in events:
        character_id = record.envelope.stream.removeprefix("character-")
        current = views.get(character_id) or CharacterView(character_id)
        views[character_id] = evolve_character(current, message, record.envelope.seq or 0, record.recorded_at)
    await conn.executemany(_UPSERT_CHARACTER, [_character_args(v) for v in views.values() if v.exists])


_UPSERT_CHARACTER = """
    INSERT INTO characters_view (character_id, name, gender, personality, occupation, persona, art_style, owner,
                                 builtin, reference, reference_sha256, threshold, version, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15)
    ON CONFLICT (character_id) DO UPDATE SET
        name = excluded.name, gender = excluded.gender, personality = excluded.personality,
        occupation = excluded.occupation, persona = excluded.persona, art_style = excluded.art_style,
        owner = excluded.owner, builtin = excluded.builtin, reference = excluded.reference,
        reference_sha256 = excluded.reference_sha256, threshold = excluded.threshold, version = excluded.version,
        updated_at = excluded.updated_at
    WHERE characters_view.version < excluded.version
"""


def _character_args(v: CharacterView) -> tuple[Any, ...]:
    reference = None if v.reference is None else v.reference.model_dump_json()
    return (v.character_id, v.name, v.gender, v.personality, v.occupation, v.persona, v.art_style, v.owner,
            v.builtin, reference, None if v.reference is None else v.reference.sha256, v.threshold, v.version,
            v.created_at, v.updated_at)


_UPSERT_USER_REFERENCE = """
    INSERT INTO user_references_view (character_id, user_id, reference, reference_sha256, version, updated_at)
    VALUES ($1, $2, $3::jsonb, $4, $5, $6)
    ON CONFLICT (character_id, user_id) DO UPDATE SET
        reference = excluded.reference, reference_sha256 = excluded.reference_sha256, version = excluded.version,
        updated_at = excluded.updated_at
    WHERE user_references_view.version < excluded.version
"""


def _user_reference_args(record: RecordedEvent, event: CharacterReferenceSet) -> tuple[Any, ...]:
    return (event.character_id, event.for_user, event.image.model_dump_json(), event.image.sha256,
            record.envelope.seq or 0, record.recorded_at)


def character_from_row(row: asyncpg.Record) -> CharacterView:
    """A `characters_view` row; a built-in one with the row's `user_reference` (joined in) as its reference."""
    view = CharacterView(
        character_id=row["character_id"], name=row["name"], gender=row["gender"], personality=row["personality"],
        occupation=row["occupation"], persona=row["persona"], art_style=row["art_style"], owner=row["owner"],
        builtin=row["builtin"], reference=_image(row["reference"]), threshold=row["threshold"],
        version=row["version"], exists=True, created_at=row["created_at"], updated_at=row["updated_at"])
    return view.for_user(_image(row.get("user_reference")))


def _image(value: str | dict | None) -> ImageRef | None:
    if value is None:
        return None
    return ImageRef.model_validate(json.loads(value) if isinstance(value, str) else value)


# -- conversations and the cost of replies ------------------------------------------------------------


async def _project_chat(conn: asyncpg.Connection, record: RecordedEvent, message: Message) -> None:
    if isinstance(message, ConversationStarted):
        await conn.execute(
            "INSERT INTO conversations_view (conversation_id, user_id, character_id, started_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (conversation_id) DO NOTHING",
            message.conversation_id, message.user_id, message.character_id, record.recorded_at)
    elif isinstance(message, CharacterReplied):
        await conn.execute(
            """INSERT INTO replies_view (event_id, conversation_id, message_id, user_id, character_id, model, offline,
                                         prompt_tokens, completion_tokens, cost_usd, replied_at)
               VALUES ($1, $2, $3,
                       coalesce($4, (SELECT user_id FROM conversations_view WHERE conversation_id = $2)),
                       coalesce($5, (SELECT character_id FROM conversations_view WHERE conversation_id = $2)),
                       $6, $7, $8, $9, $10, $11)
               ON CONFLICT (event_id) DO NOTHING""",
            record.envelope.event_id, message.conversation_id, message.message_id, message.user_id,
            message.character_id, message.model, message.offline, message.prompt_tokens, message.completion_tokens,
            message.cost_usd, record.recorded_at)
