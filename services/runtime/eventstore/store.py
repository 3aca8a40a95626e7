"""Append to and read from the event log in Postgres.

    EventStoreError
    ├── WrongExpectedVersion   the stream moved on since the writer read it: re-read, re-decide
    └── DuplicateEventId       an event id is already used by a different event

Every append writes the stream's events and their outbox rows (plus any commands the
decision emits) in one transaction, so nothing is published that was not recorded and
nothing recorded is left unpublished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.base import Message
from contracts.envelope import Envelope
from contracts.registry import MessageRegistry
from contracts.subjects import command_subject, event_subject
from services.runtime.database import DriverPool, driver_pool
from services.runtime.eventstore.rows import (
    RecordedEvent,
    json_text,
    metadata_json,
    no_collection,
    recorded,
)

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
        FROM unnest($8::uuid[], $9::text[], $10::bytea[]) WITH ORDINALITY AS m(message_id, subject, payload, n)
        WHERE EXISTS (SELECT FROM appended)
        ORDER BY m.n  -- outbox ids (the relay's publishing order) in the order given
    )
    SELECT head.version AS head, appended.global_position
    FROM head LEFT JOIN appended ON true
"""

# Replay needs only what a fold reads, as text: no envelope, no metadata, no JSON decoding here.
_REPLAY = """
    SELECT stream_version, type, version, data::text FROM events
    WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version
"""

_WARM_STREAM = "warm-up-never-written"

_HEAD = "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1"

_LANDED = """
    SELECT stream_id, stream_version, global_position FROM events
    WHERE event_id = ANY($1::uuid[]) ORDER BY stream_version
"""

_COLUMNS = "global_position, recorded_at, event_id, stream_id, stream_version, type, version, data, metadata"

_READ_STREAM = f"""
    SELECT {_COLUMNS} FROM events
    WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version
"""

_READ_STREAMS = f"""
    SELECT {_COLUMNS} FROM events
    WHERE stream_id = ANY($1::text[]) AND global_position <= $2 ORDER BY stream_id, stream_version
"""

# Identity values are taken at insert time but become visible at commit, so rows written by
# transactions at or after the oldest still-running one wait (see read_all).
_READ_ALL = f"""
    SELECT {_COLUMNS} FROM events
    WHERE global_position > $1 AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY global_position LIMIT $2
"""


# Subjects repeat (one per type and stream), and validating their tokens is regex work per event.
_event_subject = lru_cache(maxsize=4096)(event_subject)
_command_subject = lru_cache(maxsize=256)(command_subject)


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
class AppendResult:
    """The stream's version after the append; `idempotent` when the batch was already there."""

    stream_version: int
    global_positions: tuple[int, ...]
    idempotent: bool = False


class EventStore:
    """The `events` table, with optimistic concurrency per stream.

    Every statement is a single autocommit one, sent through a plain asyncpg pool beside the
    engine (`services.runtime.database.driver_pool`: same URL, opened on first use, closed by
    `engine.dispose()`), or through `pool` when given (the caller closes it): SQLAlchemy's
    checkout and result layer cost more client CPU than the database round trip does.
    """

    def __init__(self, engine: AsyncEngine, *, pool: asyncpg.Pool | None = None) -> None:
        self._driver: DriverPool = driver_pool(engine) if pool is None else DriverPool.wrapping(pool)
        self._append_listeners: list[Callable[[], None]] = []

    def on_append(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every committed append (wakes the outbox relay at once)."""
        self._append_listeners.append(listener)

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """One statement on a pooled connection; asyncpg reuses its prepared form per connection."""
        driver = self._driver
        pool = driver.pool or await driver.open()
        if pool.get_idle_size():
            conn = await pool.acquire()  # no wait: an idle connection is there
        else:
            # Every connection is busy: bound the wait as SQLAlchemy's pool_timeout did. (Not
            # acquire(timeout=): asyncpg's wait_for makes a task per call on Python 3.11.)
            async with asyncio.timeout(driver.timeout_s):
                conn = await pool.acquire()
        try:
            return await conn.fetch(query, *args)
        finally:
            await pool.release(conn)

    async def warm(self, connections: int) -> None:
        """Open the pool with `connections` connections, each with the append and read statements prepared:
        the first requests after start-up then pay no connection set-up (measured at tens of ms each)."""
        pool = self._driver.pool or await self._driver.open()
        held = [await pool.acquire() for _ in range(max(1, connections))]
        try:
            for conn in held:
                await conn.fetch(_REPLAY, _WARM_STREAM, 0)
                # Expected version -1 never matches: the statement is prepared and cached, nothing is written.
                await conn.fetch(_APPEND, _WARM_STREAM, -1, [], [], [], [], [], [], [], [])
        finally:
            for conn in held:
                await pool.release(conn)

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
        ids, types, versions, data, metadata, subjects, payloads = [], [], [], [], [], [], []
        for seq, env in enumerate(batch, head + 1):
            if env.seq != seq:
                env = env.model_copy(update={"seq": seq})
            ids.append(env.event_id)
            types.append(env.type)
            versions.append(env.version)
            data.append(json_text(env.data))
            metadata.append(metadata_json(env))
            subjects.append(_event_subject(env.type, stream_id))
            payloads.append(env.to_bytes())
        message_ids = ids
        if commands:
            message_ids = [*ids, *(c.event_id for c in commands)]
            subjects += [_command_subject(c.type) for c in commands]
            payloads += [c.to_bytes() for c in commands]
        rows = await self._fetch(
            _APPEND, stream_id, head, ids, types, versions, data, metadata, message_ids, subjects, payloads
        )
        positions = tuple(row[1] for row in rows if row[1] is not None)
        if not positions:
            raise WrongExpectedVersion(stream_id, head, rows[0][0])
        for listener in self._append_listeners:
            listener()
        return AppendResult(head + len(batch), positions)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's head version (0: no events yet)."""
        rows = await self._fetch(_HEAD, stream_id)
        return int(rows[0][0])

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        """The stream's events after `after_version`, in order."""
        rows = await self._fetch(_READ_STREAM, stream_id, after_version)
        with no_collection():
            return [recorded(row) for row in rows]

    async def read_streams(self, stream_ids: Sequence[str], *, up_to_position: int) -> dict[str, list[RecordedEvent]]:
        """Each stream's events at or before a global position, in order (streams without any are absent)."""
        rows = await self._fetch(_READ_STREAMS, list(stream_ids), up_to_position)
        streams: dict[str, list[RecordedEvent]] = {}
        with no_collection():
            for row in rows:
                streams.setdefault(row["stream_id"], []).append(recorded(row))
        return streams

    async def replay(
        self, stream_id: str, registry: MessageRegistry, *, after_version: int = 0
    ) -> list[tuple[int, Message]]:
        """The stream's typed messages after `after_version` with their versions: the fast fold path."""
        rows = await self._fetch(_REPLAY, stream_id, after_version)
        with no_collection():
            return [(row[0], registry.parse_json(row[1], row[2], row[3])) for row in rows]

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events after a global position, never skipping one whose transaction is still open.

        Identity values are taken at insert time but become visible at commit, so a reader
        that simply took `global_position > p` could pass over a slower transaction's row for
        good. Rows written by transactions at or after the oldest still-running one wait.
        """
        rows = await self._fetch(_READ_ALL, after_position, limit)
        with no_collection():
            return [recorded(row) for row in rows]

    async def _already_appended(self, stream_id: str, batch: Sequence[Envelope]) -> AppendResult | None:
        ids = [env.event_id for env in batch]
        rows = await self._fetch(_LANDED, ids)
        if len(rows) != len(ids) or any(row["stream_id"] != stream_id for row in rows):
            return None
        return AppendResult(rows[-1]["stream_version"], tuple(row["global_position"] for row in rows), idempotent=True)

