"""Backends for the benchmarks: embedded NATS + Postgres in a temp dir, or the servers named by env.

    LIKENESS_BENCH_NATS_URL       use this NATS instead of an embedded one
    LIKENESS_BENCH_DATABASE_URL   use this Postgres (an admin URL): a fresh database is created
                                  for the run (and dropped afterwards)

Migrations are applied either way. Usage:

    with backends() as (nats_url, database_url):
        asyncio.run(main(nats_url, database_url))
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from services.launcher.scratch import scratch_backends
from services.runtime.settings import to_asyncpg_dsn

__all__ = ["backends", "machine", "pg_settings"]


@contextmanager
def backends() -> Iterator[tuple[str, str]]:
    nats_url = os.environ.get("LIKENESS_BENCH_NATS_URL")
    external_db = os.environ.get("LIKENESS_BENCH_DATABASE_URL")
    nats_kind = "embedded" if nats_url is None else "external (LIKENESS_BENCH_NATS_URL)"
    db_kind = "embedded" if external_db is None else "external (LIKENESS_BENCH_DATABASE_URL), fresh database"
    started = time.perf_counter()
    with scratch_backends(nats_url=nats_url, admin_database_url=external_db, database_prefix="likeness_bench",
                          drop=True) as ready:
        print(f"backends: NATS {nats_kind} {ready.nats_url}")
        print(f"          Postgres {db_kind} {_redact(ready.database_url)}")
        print(f"          ready in {time.perf_counter() - started:.1f}s (migrations applied)")
        yield ready.nats_url, ready.database_url


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


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}{at}{host}"
