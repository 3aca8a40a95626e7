"""Throwaway backends for tests and benchmarks: embedded NATS and Postgres, or borrowed servers.

    with scratch_backends(tmp, nats_url=None, admin_database_url=None) as backends:
        ...  # backends.nats_url, backends.database_url (migrations applied)

A Postgres given by URL is a server to borrow, not a database to use: a fresh database with a random
name is created on it for the run, so runs never see each other's events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.launcher.migrations import migrate
from services.runtime.settings import to_asyncpg_dsn

__all__ = ["Backends", "drop_database", "fresh_database", "scratch_backends"]

log = logging.getLogger(__name__)

_ADMIN_TIMEOUT_S = 10


@dataclass(frozen=True)
class Backends:
    nats_url: str
    database_url: str


@contextmanager
def scratch_backends(
    state_dir: Path | None = None,
    *,
    nats_url: str | None = None,
    admin_database_url: str | None = None,
    database_prefix: str = "likeness_scratch",
    drop: bool = False,
) -> Iterator[Backends]:
    """NATS and a migrated database for one run; what was started here is stopped on exit.

    Embedded servers live in `state_dir` (a temporary folder when None). `nats_url` is used as it is;
    on the server of `admin_database_url` a fresh database is created, and dropped on exit if `drop`.
    """
    from services.launcher.embedded import EmbeddedNats, EmbeddedPostgres  # psutil & co. only when needed

    with ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="likeness-scratch-")))
            os.chmod(state_dir, 0o755)  # the embedded Postgres runs as an unprivileged user under root
        if nats_url is None:
            nats_url = stack.enter_context(EmbeddedNats(state_dir / "nats")).url
        if admin_database_url is None:
            database_url = stack.enter_context(EmbeddedPostgres(state_dir / "postgres")).url
        else:
            database_url = fresh_database(admin_database_url, database_prefix)
            if drop:
                stack.callback(_drop_or_warn, admin_database_url, database_url)
        migrate(database_url)
        yield Backends(nats_url, database_url)


def fresh_database(admin_url: str, prefix: str = "likeness_scratch") -> str:
    """Create an empty database named `<prefix>_<random>` on the server of `admin_url`; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _execute(admin_url, f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, database_url: str) -> None:
    """Drop the database of `database_url` (made by `fresh_database`), even with clients still connected."""
    _execute(admin_url, f'DROP DATABASE IF EXISTS "{_name(database_url)}" WITH (FORCE)')


def _drop_or_warn(admin_url: str, database_url: str) -> None:
    try:
        drop_database(admin_url, database_url)
    except Exception as exc:  # leave it behind rather than hide the run's own results or error
        log.warning("could not drop scratch database %s: %r", _name(database_url), exc)


def _name(database_url: str) -> str:
    return database_url.rsplit("/", 1)[1]


def _execute(admin_url: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(to_asyncpg_dsn(admin_url), timeout=_ADMIN_TIMEOUT_S)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())
