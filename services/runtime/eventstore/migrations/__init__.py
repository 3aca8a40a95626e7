"""Alembic migrations of the event log (branch "eventlog"); `upgrade(url)` brings a database to head.

A service with tables of its own keeps their migrations as a branch of its own, in its package (the
gateway's: services/gateway/migrations, branch "gateway"); whoever migrates (the launcher) passes those
folders as `version_locations`, and `upgrade` brings every branch to its head.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["upgrade", "upgrade_async"]

_HERE = Path(__file__).parent


def _config(database_url: str, version_locations: Sequence[Path]) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    # Alembic splits this option on the path separator setting; one space-free path per entry.
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in (_HERE / "versions", *version_locations)))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "heads", *, version_locations: Sequence[Path] = ()) -> None:
    """Apply every migration up to `revision` (every branch's head by default), the event log's and those in
    `version_locations`; safe to run from several processes at once."""
    command.upgrade(_config(database_url, version_locations), revision)


async def upgrade_async(database_url: str, revision: str = "heads", *, version_locations: Sequence[Path] = ()) -> None:
    """`upgrade` for callers already inside an event loop (Alembic's env runs its own)."""
    await asyncio.to_thread(upgrade, database_url, revision, version_locations=version_locations)
