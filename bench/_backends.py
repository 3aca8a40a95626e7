"""Backends for the benchmarks: embedded NATS + Postgres in a temp dir, or the servers named by env.

    LIKENESS_BENCH_NATS_URL       use this NATS instead of an embedded one
    LIKENESS_BENCH_DATABASE_URL   use this Postgres (an admin URL): a fresh database is created
                                  for the run (and dropped afterwards)

Migrations are applied either way. Usage:

    with backends() as (nats_url, database_url):
        asyncio.run(main(nats_url, database_url))
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg

from services.runtime.eventstore.migrations import upgrade
from services.runtime.settings import to_asyncpg_dsn

__all__ = ["backends", "machine", "pg_settings"]


@contextmanager
def backends() -> Iterator[tuple[str, str]]:
    from services.runtime.embedded import EmbeddedNats, EmbeddedPostgres

    nats_url = os.environ.get("LIKENESS_BENCH_NATS_URL")
    external_db = os.environ.get("LIKENESS_BENCH_DATABASE_URL")
    with ExitStack() as stack:
        started = time.perf_counter()
        state: Path | None = None
        if nats_url is None or external_db is None:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="likeness-bench-")))
            os.chmod(state, 0o755)  # the embedded Postgres runs as an unprivileged user under root
        if nats_url is None:
            assert state is not None
            server = stack.enter_context(EmbeddedNats(state / "nats"))
            nats_url = server.url
            nats_kind = "embedded"
        else:
            nats_kind = "external (LIKENESS_BENCH_NATS_URL)"
        if external_db is None:
            assert state is not None
            pg = stack.enter_context(EmbeddedPostgres(state / "postgres"))
            database_url = pg.url
            db_kind = "embedded"
        else:
            database_url = _fresh_database(external_db)
            stack.callback(_drop_database, external_db, database_url.rsplit("/", 1)[1])
            db_kind = "external (LIKENESS_BENCH_DATABASE_URL), fresh database"
        upgrade(database_url)
        print(f"backends: NATS {nats_kind} {nats_url}")
        print(f"          Postgres {db_kind} {_redact(database_url)}")
        print(f"          ready in {time.perf_counter() - started:.1f}s (migrations applied)")
        yield nats_url, database_url


def machine() -> str:
    """CPU count and load: the figures are only as steady as the machine is idle."""
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return f"cpus={os.cpu_count()} loadavg(1/5/15m)={load}"


async def pg_settings(database_url: str) -> str:
    """The Postgres settings that decide what a commit costs, for the report header."""
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=10)
    try:
        version = await conn.fetchval("SHOW server_version")
        rows = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name",
            ["fsync", "synchronous_commit", "wal_sync_method", "shared_buffers", "full_page_writes"],
        )
    finally:
        await conn.close()
    return f"Postgres {version}: " + ", ".join(f"{r['name']}={r['setting']}" for r in rows)


def _fresh_database(admin_url: str) -> str:
    name = f"likeness_bench_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(to_asyncpg_dsn(admin_url), timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _drop_database(admin_url: str, name: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(to_asyncpg_dsn(admin_url), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        asyncio.run(drop())
    except Exception as exc:  # leave it behind rather than hide the results
        print(f"(could not drop benchmark database {name}: {exc!r})")


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}{at}{host}"
