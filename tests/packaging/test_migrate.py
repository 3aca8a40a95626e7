"""The release steps the Kubernetes manifests run: the Job's `likeness migrate --provision` and every pod's
init step `likeness migrate --wait`, against a real Postgres and NATS (a fresh, empty database each)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from contracts.subjects import COMMANDS_STREAM, DEAD_LETTERS_STREAM, EVENTS_STREAM
from services.launcher.migrations import heads, schema_status
from services.launcher.scratch import drop_database, fresh_database
from services.runtime.settings import to_asyncpg_dsn

LIKENESS = str(Path(sys.executable).parent / "likeness")


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    url = fresh_database(admin, "likeness_migrate_test")
    yield url
    drop_database(admin, url)


def likeness(*args: str, database_url: str, nats_url: str | None = None, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIKENESS_")}
    env.update(LIKENESS_DATABASE_URL=database_url, LIKENESS_STATE_DIR=str(tmp_path / "state"))
    if nats_url:
        env["LIKENESS_NATS_URL"] = nats_url
    return subprocess.run([LIKENESS, "migrate", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


def test_the_init_step_waits_for_the_job_then_lets_the_pod_start(empty_database: str, nats_url: str,
                                                                  tmp_path: Path) -> None:
    assert schema_status(empty_database).pending == heads()

    waited = likeness("--wait", "--timeout", "2", database_url=empty_database, tmp_path=tmp_path)
    assert waited.returncode == 1
    assert "still lacks" in waited.stderr and all(head in waited.stderr for head in heads())

    job = likeness("--provision", "--timeout", "60", database_url=empty_database, nats_url=nats_url,
                   tmp_path=tmp_path)
    assert job.returncode == 0, job.stderr
    assert asyncio.run(_stream_names(nats_url)) >= {EVENTS_STREAM, COMMANDS_STREAM, DEAD_LETTERS_STREAM}

    waited = likeness("--wait", "--timeout", "10", database_url=empty_database, tmp_path=tmp_path)
    assert waited.returncode == 0, waited.stderr
    assert schema_status(empty_database).pending == frozenset()


def test_a_schema_newer_than_the_image_lets_an_older_pod_start(empty_database: str, tmp_path: Path) -> None:
    """A rollback: the database was migrated by a newer release, whose revisions this code does not know."""
    asyncio.run(_execute(empty_database, "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
                         "INSERT INTO alembic_version VALUES ('9999_from_a_newer_release')"))
    status = schema_status(empty_database)
    assert status.unknown == {"9999_from_a_newer_release"} and status.ready

    waited = likeness("--wait", "--timeout", "5", database_url=empty_database, tmp_path=tmp_path)
    assert waited.returncode == 0 and "newer than this image knows" in waited.stderr


def test_provision_without_a_nats_url_is_refused(empty_database: str, tmp_path: Path) -> None:
    job = likeness("--provision", database_url=empty_database, tmp_path=tmp_path)
    assert job.returncode == 2 and "LIKENESS_NATS_URL" in job.stderr


async def _stream_names(nats_url: str) -> set[str]:
    nc = await nats.connect(nats_url, connect_timeout=5)
    try:
        return {info.config.name for info in await nc.jetstream(timeout=5).streams_info()}
    finally:
        await nc.drain()


async def _execute(database_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement, timeout=10)
    finally:
        await conn.close(timeout=10)
