"""Append to and read from the event log in Postgres.

    EventStoreError
    ├── WrongExpectedVersion   the stream moved on since the writer read it: re-read, re-decide
    └── DuplicateEventId       an event id is already used by a different event

Every append writes the stream's events and their outbox rows (plus any commands the
decision emits) in one transaction, so nothing is published that was not recorded and
nothing recorded is left unpublished.
"""

from __future__ import annotations

import gc
import json

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.base import Message
from contracts.envelope import Envelope
from contracts.registry import MessageRegistry
from contracts.subjects import command_subject, event_subject
from services.runtime.eventstore.tables import events

__all__ = [
    "ANY_VERSION",
    "AppendResult",
    "DuplicateEventId",
    "EventStore",
    "EventStoreError",
    "RecordedEvent",
    "WrongExpectedVersion",
]

# Append whatever the stream's version is (for writers that need no concurrency check).
ANY_VERSION: Final = None


# One round trip appends: it checks the head, inserts the events and their outbox rows, and
# reports the head it saw; no row appended means the expected version was stale.
_APPEND = """
    WITH head AS (
        -- Taking the transaction id here, before any position is numbered, keeps xid order and
        -- position order the same, which read_all's "held back behind open transactions" relies on.
        SELECT coalesce(max(stream_version), 0) AS version, pg_current_xact_id() AS xid
        FROM events WHERE stream_id = $1
    ), appended AS (
        INSERT INTO events (stream_id, stream_version, event_id, type, version, data, metadata, tx_id)
        SELECT $1, head.version + e.n, e.event_id, e.type, e.version, e.data::jsonb, e.metadata::jsonb, head.xid
        FROM head, unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[])
             WITH ORDINALITY AS e(event_id, type, version, data, metadata, n)
        WHERE head.version = $2
        RETURNING global_position
    ), published AS (
        INSERT INTO outbox (message_id, subject, payload)
        SELECT m.message_id, m.subject, m.payload
        FROM unnest($8::uuid[], $9::text[], $10::bytea[]) AS m(message_id, subject, payload)
        WHERE EXISTS (SELECT FROM appended)
    )
    SELECT head.version AS head, appended.global_position
    FROM head LEFT JOIN appended ON true
"""

# Replay needs only what a fold reads, as text: no envelope, no metadata, no JSON decoding here.
_REPLAY = """
    SELECT stream_version, type, version, data::text FROM events
    WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version
"""


class EventStoreError(Exception):
    """Root of the event store's errors."""


class WrongExpectedVersion(EventStoreError):
    """The stream is not at the version the writer decided on."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r} is at version {actual}, not the expected {expected}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class DuplicateEventId(EventStoreError):
    """An event id in the batch already names another event."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One row of the log: its global position, when it was recorded, and the envelope."""

    global_position: int
    recorded_at: datetime
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The stream's version after the append; `idempotent` when the batch was already there."""

    stream_version: int
    global_positions: tuple[int, ...]
    idempotent: bool = False


class EventStore:
    """The `events` table, with optimistic concurrency per stream.

    Every write is a single statement, so the engine may (and for speed should) be autocommit.
    The hot paths (append, replay) talk to asyncpg directly on the engine's pooled connections:
    SQLAlchemy's result layer costs more than the database round trip does.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._append_listeners: list[Callable[[], None]] = []

    def on_append(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every committed append (wakes the outbox relay at once)."""
        self._append_listeners.append(listener)

    @asynccontextmanager
    async def _driver(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            yield raw.driver_connection

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        batch: Sequence[Envelope],
        *,
        commands: Sequence[Envelope] = (),
    ) -> AppendResult:
        """Append `batch` after `expected_version` (0: new stream; ANY_VERSION: no check)."""
        if not batch:
            raise ValueError("append needs at least one event")
        if any(envelope.stream != stream_id for envelope in batch):
            raise ValueError(f"every envelope in the batch must belong to stream {stream_id!r}")
        while True:
            try:
                return await self._insert(stream_id, expected_version, batch, commands)
            except WrongExpectedVersion:
                # A writer retrying a batch that did land must not see a conflict: that is idempotency.
                landed = await self._already_appended(stream_id, batch)
                if landed is not None:
                    return landed
                if expected_version is ANY_VERSION:
                    continue
                raise
            except asyncpg.UniqueViolationError as exc:
                landed = await self._already_appended(stream_id, batch)
                if landed is not None:
                    return landed
                constraint = exc.constraint_name
                if constraint != "events_stream_version_key":
                    raise DuplicateEventId(f"an event id of this batch is already used ({constraint})") from None
                if expected_version is ANY_VERSION:
                    continue
                actual = await self.stream_version(stream_id)
                raise WrongExpectedVersion(stream_id, expected_version, actual) from None

    async def _insert(
        self, stream_id: str, expected_version: int | None, batch: Sequence[Envelope], commands: Sequence[Envelope]
    ) -> AppendResult:
        # Outbox payloads carry each event's seq, so the head must be known before the statement.
        head = await self.stream_version(stream_id) if expected_version is ANY_VERSION else expected_version
        numbered = [env.model_copy(update={"seq": head + i}) for i, env in enumerate(batch, 1)]
        messages = [(e, event_subject(e.type, stream_id)) for e in numbered]
        messages += [(c, command_subject(c.type)) for c in commands]
        async with self._driver() as conn:
            rows = await conn.fetch(
                _APPEND,
                stream_id,
                head,
                [e.event_id for e in numbered],
                [e.type for e in numbered],
                [e.version for e in numbered],
                [json.dumps(e.data) for e in numbered],
                [json.dumps(_metadata(e)) for e in numbered],
                [m.event_id for m, _ in messages],
                [subject for _, subject in messages],
                [m.to_bytes() for m, _ in messages],
            )
        positions = tuple(row["global_position"] for row in rows if row["global_position"] is not None)
        if not positions:
            raise WrongExpectedVersion(stream_id, head, rows[0]["head"])
        for listener in self._append_listeners:
            listener()
        return AppendResult(head + len(batch), positions)

    async def stream_version(self, stream_id: str) -> int:
        async with self._engine.connect() as conn:
            return await _head(conn, stream_id)

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        """The stream's events after `after_version`, in order."""
        query = (
            select(events)
            .where(events.c.stream_id == stream_id, events.c.stream_version > after_version)
            .order_by(events.c.stream_version)
        )
        async with self._engine.connect() as conn:
            return [_recorded(row) for row in (await conn.execute(query)).mappings()]

    async def replay(
        self, stream_id: str, registry: MessageRegistry, *, after_version: int = 0
    ) -> list[tuple[int, Message]]:
        """The stream's typed messages after `after_version` with their versions: the fast fold path."""
        async with self._driver() as conn:
            rows = await conn.fetch(_REPLAY, stream_id, after_version)
        # Thousands of fresh objects that all stay alive: a collection pass here only walks the
        # heap (measured at more than the parsing itself on a 10,000-event stream), so skip it.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return [(row[0], registry.parse_json(row[1], row[2], row[3])) for row in rows]
        finally:
            if collecting:
                gc.enable()

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events after a global position, never skipping one whose transaction is still open.

        Identity values are taken at insert time but become visible at commit, so a reader
        that simply took `global_position > p` could pass over a slower transaction's row for
        good. Rows written by transactions at or after the oldest still-running one wait.
        """
        query = (
            select(events)
            .where(
                events.c.global_position > after_position,
                events.c.tx_id < text("pg_snapshot_xmin(pg_current_snapshot())"),
            )
            .order_by(events.c.global_position)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_recorded(row) for row in (await conn.execute(query)).mappings()]

    async def _already_appended(self, stream_id: str, batch: Sequence[Envelope]) -> AppendResult | None:
        ids = [env.event_id for env in batch]
        query = (
            select(events.c.event_id, events.c.stream_id, events.c.stream_version, events.c.global_position)
            .where(events.c.event_id.in_(ids))
            .order_by(events.c.stream_version)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if len(rows) != len(ids) or any(row.stream_id != stream_id for row in rows):
            return None
        return AppendResult(rows[-1].stream_version, tuple(row.global_position for row in rows), idempotent=True)


async def _head(conn: AsyncConnection, stream_id: str) -> int:
    query = select(func.coalesce(func.max(events.c.stream_version), 0)).where(events.c.stream_id == stream_id)
    return int(await conn.scalar(query))


def _metadata(env: Envelope) -> dict[str, Any]:
    return {
        "occurred_at": env.occurred_at.isoformat(),
        "correlation_id": env.correlation_id,
        "causation_id": env.causation_id,
        "actor": env.actor,
        "trace": env.trace.model_dump(),
    }


def _recorded(row: Any) -> RecordedEvent:
    meta = row["metadata"]
    envelope = Envelope(
        event_id=row["event_id"],
        stream=row["stream_id"],
        seq=row["stream_version"],
        type=row["type"],
        version=row["version"],
        occurred_at=meta["occurred_at"],
        correlation_id=meta["correlation_id"],
        causation_id=meta.get("causation_id"),
        actor=meta.get("actor"),
        trace=meta.get("trace") or {},
        data=row["data"],
    )
    return RecordedEvent(row["global_position"], row["recorded_at"], envelope)
