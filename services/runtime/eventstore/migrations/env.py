"""Alembic environment: runs migrations over asyncpg, one process at a time."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.runtime.eventstore.tables import metadata

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 7_341_220_001


def _run(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _main(url: str) -> None:
    engine = create_async_engine(url, connect_args={"timeout": 10})
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


url = context.config.attributes["database_url"].replace("postgresql://", "postgresql+asyncpg://", 1)
asyncio.run(_main(url))
