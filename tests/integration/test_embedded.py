"""Embedded NATS and Postgres start from their wheels, serve real clients, stop, and keep data across restarts."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import asyncpg
import nats
import psutil
import pytest

from services.launcher.embedded import EmbeddedNats, EmbeddedPostgres

pytestmark = pytest.mark.integration


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether the process has exited (a zombie awaiting its reaper counts as exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


async def _connect(pg: EmbeddedPostgres) -> asyncpg.Connection:
    return await asyncpg.connect(pg.url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)


async def test_nats_serves_jetstream_and_stops(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats").start()
    try:
        assert server.url == f"nats://127.0.0.1:{server.port}"
        client = await nats.connect(server.url, connect_timeout=5, max_reconnect_attempts=0)
        js = client.jetstream(timeout=5)
        await js.add_stream(name="EMBEDDED", subjects=["embedded.>"])

        ack = await js.publish("embedded.hello", b"hi", headers={"Nats-Msg-Id": "msg-1"})
        again = await js.publish("embedded.hello", b"hi", headers={"Nats-Msg-Id": "msg-1"})
        stored = await js.get_msg("EMBEDDED", ack.seq)
        await client.close()
    finally:
        pid = server.pid
        server.stop()

    assert (ack.stream, ack.seq, ack.duplicate) == ("EMBEDDED", 1, None)
    assert again.duplicate is True
    assert stored.data == b"hi"
    assert pid is not None and _gone(pid)
    assert _refuses(server.port)


async def test_nats_keeps_streams_across_restart(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats") as server:
        client = await nats.connect(server.url, connect_timeout=5, max_reconnect_attempts=0)
        await client.jetstream(timeout=5).add_stream(name="KEPT", subjects=["kept.>"])
        await client.jetstream(timeout=5).publish("kept.one", b"1")
        await client.close()
    with EmbeddedNats(tmp_path / "nats") as server:
        client = await nats.connect(server.url, connect_timeout=5, max_reconnect_attempts=0)
        info = await client.jetstream(timeout=5).stream_info("KEPT")
        await client.close()
    assert info.state.messages == 1


async def test_postgres_keeps_rows_across_restart(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as pg:
        assert pg.url == f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/likeness"
        conn = await _connect(pg)
        await conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)")
        await conn.execute("INSERT INTO notes VALUES (1, 'kept across restarts')")
        await conn.close()
        first_pid = pg.pid
    assert first_pid is not None and _gone(first_pid)

    with EmbeddedPostgres(tmp_path / "pg") as pg:
        assert pg.pid != first_pid
        conn = await _connect(pg)
        body = await conn.fetchval("SELECT body FROM notes WHERE id = 1")
        database = await conn.fetchval("SELECT current_database()")
        await conn.close()
    assert (body, database) == ("kept across restarts", "likeness")


async def test_postgres_adopts_a_postmaster_left_running(tmp_path: Path) -> None:
    leftover = EmbeddedPostgres(tmp_path / "pg").start()  # never stopped: as after a crashed launcher
    adopted = EmbeddedPostgres(tmp_path / "pg").start()
    try:
        assert (adopted.pid, adopted.port) == (leftover.pid, leftover.port)
        conn = await _connect(adopted)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    finally:
        adopted.stop()
    assert leftover.pid is not None and _gone(leftover.pid)
