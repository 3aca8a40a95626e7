"""Every migration branch of the system: the event log's (services.runtime), and the services' own tables
(the gateway's accounts and read models), each a branch of its own in its service's package."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from services.runtime.eventstore.migrations import upgrade

__all__ = ["SERVICE_MIGRATIONS", "migrate"]

SERVICE_MIGRATIONS: tuple[Path, ...] = (Path(str(files("services.gateway") / "migrations")),)


def migrate(database_url: str) -> None:
    """Bring the event log and every service's tables to their heads."""
    upgrade(database_url, version_locations=SERVICE_MIGRATIONS)
