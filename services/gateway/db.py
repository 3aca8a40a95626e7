"""Raw asyncpg connections from the runtime's pooled engine, and the log reads the gateway needs.

The gateway's queries are few and hot (every request checks ownership), so they speak asyncpg
directly, as the event store does, instead of paying SQLAlchemy's result layer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.faults import is_infrastructure_failure

__all__ = ["Database"]

# After a database restart every pooled connection is closed; each checkout replaces one.
_STALE_CHECKOUTS = 3


class Database:
    """Pooled asyncpg connections plus the few direct reads of the events table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[asyncpg.Connection]:
        """A live pooled connection. The driver connection is used beneath SQLAlchemy, whose disconnect
        handling therefore never sees its errors: a connection found closed (the server restarted since
        it was pooled) or broken by a query is invalidated here, so the pool replaces it."""
        for _ in range(_STALE_CHECKOUTS):
            async with self.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                if driver.is_closed():
                    await conn.invalidate()
                    continue
                try:
                    yield driver
                except BaseException as exc:
                    if driver.is_closed() or is_infrastructure_failure(exc):
                        await conn.invalidate()
                    raise
                return
        raise asyncpg.exceptions.ConnectionDoesNotExistError("every pooled connection was closed; retry")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connect() as conn, conn.transaction():
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connect() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.connect() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connect() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.connect() as conn:
            return await conn.execute(query, *args)

    # -- the log --------------------------------------------------------------------------------

    async def first_event(self, stream_id: str) -> tuple[str, dict[str, Any]] | None:
        """(type, data) of a stream's first event: who started it (a chain's or conversation's owner)."""
        row = await self.fetchrow("SELECT type, data::text AS data FROM events WHERE stream_id = $1 "
                                  "AND stream_version = 1", stream_id)
        return None if row is None else (row["type"], json.loads(row["data"]))

    async def stream_version(self, stream_id: str) -> int:
        return int(await self.fetchval("SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1",
                                       stream_id))

    async def caused_by(self, stream_id: str, causation_id: str) -> asyncpg.Record | None:
        """The first event of a stream that answers the message `causation_id` (its envelope names it)."""
        return await self.fetchrow(
            "SELECT stream_version, type, version, data::text AS data, metadata::text AS metadata, event_id "
            "FROM events WHERE stream_id = $1 AND metadata->>'causation_id' = $2 ORDER BY stream_version LIMIT 1",
            stream_id, causation_id)

    async def chat_answers(self, stream_id: str, message_id: str) -> list[dict[str, Any]]:
        """Envelopes (as JSON objects) of the conversation's events that answer the user's message."""
        rows = await self.fetch(
            "SELECT stream_version, type, data::text AS data FROM events WHERE stream_id = $1 "
            "AND type = ANY($2::text[]) AND (data->>'in_reply_to' = $3 OR data->>'message_id' = $3) "
            "ORDER BY stream_version",
            stream_id, ["chat.image_requested", "chat.picture_selected", "chat.message_refused",
                        "chat.character_replied"], message_id)
        return [{"seq": r["stream_version"], "type": r["type"], "data": json.loads(r["data"])} for r in rows]

    async def head_position(self) -> int:
        return int(await self.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))
