"""Alembic migrations of the event log; `upgrade(url)` brings a database to head."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["upgrade", "upgrade_async"]

_HERE = Path(__file__).parent


def _config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply every migration up to `revision`; safe to run from several processes at once."""
    command.upgrade(_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """`upgrade` for callers already inside an event loop (Alembic's env runs its own)."""
    await asyncio.to_thread(upgrade, database_url, revision)
