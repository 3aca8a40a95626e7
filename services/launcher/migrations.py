"""Every migration branch of the system: the event log's (services.runtime), and the services' own tables
(the gateway's accounts and read models), each a branch of its own in its service's package; and the
read-only check a pod's init step makes (`likeness migrate --wait`) that the database is at their heads."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError

from services.runtime.eventstore.migrations import upgrade
from services.runtime.settings import to_asyncpg_dsn

__all__ = ["SERVICE_MIGRATIONS", "SchemaStatus", "heads", "migrate", "schema_status", "wait_for_schema"]

SERVICE_MIGRATIONS: tuple[Path, ...] = (Path(str(files("services.gateway") / "migrations")),)
_EVENT_LOG = Path(str(files("services.runtime.eventstore") / "migrations"))


def migrate(database_url: str) -> None:
    """Bring the event log and every service's tables to their heads."""
    upgrade(database_url, version_locations=SERVICE_MIGRATIONS)


@dataclass(frozen=True)
class SchemaStatus:
    """What the database lacks of this code's heads, and the revisions it has that this code does not know."""

    pending: frozenset[str]
    unknown: frozenset[str]

    @property
    def ready(self) -> bool:
        # A revision this code does not know was written by a newer release (a rollback): migrations are
        # backward compatible for one release (expand now, contract later; deploy/README.md), so it runs.
        return not self.pending or bool(self.unknown)


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(_EVENT_LOG), version_locations=[str(_EVENT_LOG / "versions"),
                                                               *map(str, SERVICE_MIGRATIONS)])


async def _applied(database_url: str, timeout_s: float) -> set[str]:
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=timeout_s)
    try:
        if await conn.fetchval("SELECT to_regclass('alembic_version') IS NULL", timeout=timeout_s):
            return set()
        return {row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version", timeout=timeout_s)}
    finally:
        await conn.close(timeout=timeout_s)


def heads() -> frozenset[str]:
    """The head revision of every migration branch this code carries."""
    return frozenset(_scripts().get_heads())


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.revision_map.get_revision(revision) is not None
    except ResolutionError:
        return False


def schema_status(database_url: str, *, timeout_s: float = 10.0) -> SchemaStatus:
    """Compare the database's Alembic revisions with the heads this code carries (reads, never writes)."""
    scripts = _scripts()
    applied = asyncio.run(_applied(database_url, timeout_s))
    known = {rev for rev in applied if _known(scripts, rev)}
    unknown = applied - known
    reached = {script.revision for script in scripts.iterate_revisions(tuple(known), "base")} if known else set()
    return SchemaStatus(pending=frozenset(set(scripts.get_heads()) - reached), unknown=frozenset(unknown))


def wait_for_schema(database_url: str, *, timeout_s: float, poll_s: float = 2.0) -> SchemaStatus:
    """Poll until the database is at this code's heads (or newer); the last status when `timeout_s` runs out.

    Connection errors count as "not yet": the database may still be starting when a pod's init step runs.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = schema_status(database_url, timeout_s=min(10.0, max(1.0, deadline - time.monotonic())))
        except (OSError, asyncpg.PostgresError, TimeoutError) as err:
            status = SchemaStatus(pending=frozenset({f"(database not reachable: {err!r})"}), unknown=frozenset())
        if status.ready or time.monotonic() + poll_s > deadline:
            return status
        time.sleep(poll_s)
