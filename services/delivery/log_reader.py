"""Reads of the log the event store has no call for: a user's deliveries, newest first, and one event by id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import REGISTRY, Message
from contracts.delivery_rpc import DeliveryView
from services.delivery.attempts import view_of
from services.runtime.database import driver_pool
from services.runtime.eventstore import EventStore, RecordedEvent

__all__ = ["FoundEvent", "LogReader"]

# The `events_type_idx` index narrows the scan to delivery requests; their `user_id` picks the user's.
_DELIVERIES = """
    SELECT global_position, stream_id FROM events
    WHERE type = 'delivery.requested' AND data->>'user_id' = $1
      AND ($2::bigint IS NULL OR global_position < $2) AND ($3::text IS NULL OR data->>'chain_id' = $3)
    ORDER BY global_position DESC LIMIT $4
"""
_EVENT = "SELECT stream_id, stream_version FROM events WHERE event_id = $1"
_EVERYTHING = 2**62


@dataclass(frozen=True)
class FoundEvent:
    stream: str
    occurred_at: datetime
    message: Message
    event_id: UUID


class LogReader:
    def __init__(self, engine: AsyncEngine, store: EventStore) -> None:
        self._driver = driver_pool(engine)
        self._store = store

    async def deliveries(self, user_id: str, *, limit: int, before: int | None,
                         chain_id: UUID | None) -> tuple[list[DeliveryView], int | None]:
        """A page of the user's deliveries, newest first, and the cursor of the next (older) page."""
        pool = self._driver.pool or await self._driver.open()
        rows = await pool.fetch(_DELIVERIES, user_id, before, str(chain_id) if chain_id else None, limit)
        streams = await self._store.read_streams([row["stream_id"] for row in rows], up_to_position=_EVERYTHING)
        views = [view for row in rows if (view := _view(streams.get(row["stream_id"], []))) is not None]
        cursor = rows[-1]["global_position"] if len(rows) == limit else None
        return views, cursor

    async def delivery(self, stream: str) -> DeliveryView | None:
        return _view(await self._store.read_stream(stream))

    async def event(self, event_id: UUID) -> FoundEvent | None:
        """A recorded event by its id, with its stream."""
        pool = self._driver.pool or await self._driver.open()
        row = await pool.fetchrow(_EVENT, event_id)
        if row is None:
            return None
        for record in await self._store.read_stream(row["stream_id"], after_version=row["stream_version"] - 1):
            if record.envelope.event_id == event_id:
                env = record.envelope
                return FoundEvent(env.stream, env.occurred_at, env.open(REGISTRY), env.event_id)
        return None


def _view(records: list[RecordedEvent]) -> DeliveryView | None:
    return view_of([(r.envelope.occurred_at, r.envelope.open(REGISTRY)) for r in records])
