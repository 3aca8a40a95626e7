"""The outbox relay: moves committed outbox rows to JetStream, then deletes them.

At most one relay publishes at a time (a Postgres advisory lock held on its own connection;
the others wait as standbys and take over when that connection drops), so rows leave in id
order and a stream's events reach NATS in stream order. A relay that dies after publishing
but before deleting republishes those rows on restart; the `Nats-Msg-Id` header (the event
id) lets JetStream's de-duplication window drop the repeats.

A committed append wakes the relay at once: the writer's own relay when it leads, else a NOTIFY to the
one that does (`OutboxNotifier`); the relay's poll covers a wake-up lost to a crash or an outage.
(An in-process hand-off that published each commit from the writing process itself was tried for
issue 15 and removed: bench/scale.py measured no gain on the step transition, at the cost of a second
publishing path and one more database connection per process.)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from contextlib import suppress

import asyncpg
import nats
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge

from services.runtime.eventstore.tables import OUTBOX_CHANNEL
from services.runtime import publish_errors  # noqa: F401  (an error reply fails a pipelined publish at once)
from services.runtime.faults import Outage
from services.runtime.settings import RuntimeSettings, to_asyncpg_dsn

__all__ = ["OutboxNotifier", "OutboxRelay"]

log = logging.getLogger(__name__)

# Any constant; the same in every relay process so that only one of them holds it.
_RELAY_LOCK = 7_341_220_002

PUBLISHED = Counter("likeness_outbox_published_total", "Outbox messages published to JetStream")
LEADER = Gauge("likeness_outbox_relay_leader", "1 while this process is the publishing relay")


class OutboxNotifier:
    """Tells relays in other processes that the outbox has new rows: a NOTIFY after the commit.

    Pokes are coalesced (one NOTIFY in flight at a time), so a burst of appends costs a few
    notifications, and the append itself never waits for one.
    """

    def __init__(self, database_url: str, *, timeout_s: float = 10.0) -> None:
        self._dsn = to_asyncpg_dsn(database_url)
        self._timeout_s = timeout_s
        self._dirty = asyncio.Event()

    def poke(self) -> None:
        self._dirty.set()

    async def run(self, stop: asyncio.Event) -> None:
        outage = Outage("outbox notifier", log)
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._timeout_s, command_timeout=self._timeout_s)
                try:
                    outage.over()
                    while not stop.is_set():
                        await _wait_any(stop, self._dirty, 60.0)
                        if self._dirty.is_set():
                            self._dirty.clear()
                            await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
                finally:
                    with suppress(Exception):
                        await asyncio.wait_for(conn.close(), self._timeout_s)
            except Exception as exc:  # noqa: BLE001 - every database error class: reconnect, never die
                # A poke lost meanwhile costs at most the relay's poll interval.
                await _sleep_or_stop(stop, outage.failed(exc))


class OutboxRelay:
    """Drains the outbox into JetStream when woken (after a commit) and on a slow poll."""

    def __init__(
        self,
        database_url: str,
        js: JetStreamContext,
        *,
        batch_size: int = 256,
        poll_interval_s: float = 1.0,
        publish_timeout_s: float = 5.0,
        db_timeout_s: float = 10.0,
        crash_after_publishes: int | None = None,
    ) -> None:
        self._dsn = to_asyncpg_dsn(database_url)
        self._js = js
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._publish_timeout_s = publish_timeout_s
        self._db_timeout_s = db_timeout_s
        self._crash_after = crash_after_publishes
        self._published = 0
        self._wake = asyncio.Event()
        self.is_leader = False

    def wake(self) -> None:
        """Drain now: a writer in this process has just committed."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; after any failure (Postgres or NATS away, a closed connection) it
        reconnects with capped back-off and resumes at the oldest row still in the outbox."""
        outage = Outage("outbox relay", log)
        while not stop.is_set():
            try:
                await self._lead(stop, outage)
            except Exception as exc:  # noqa: BLE001 - every error class: rows stay in the outbox until published
                await _sleep_or_stop(stop, outage.failed(exc))

    async def _lead(self, stop: asyncio.Event, outage: Outage) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=self._db_timeout_s, command_timeout=self._db_timeout_s)
        outage.over()
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                if await _sleep_or_stop(stop, self._poll_interval_s):
                    return
            self.is_leader = True
            LEADER.set(1)
            await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self.wake())
            while not stop.is_set():
                self._wake.clear()
                if await self.drain(conn) == 0:
                    await _wait_any(stop, self._wake, self._poll_interval_s)
        finally:
            self.is_leader = False
            LEADER.set(0)
            with suppress(Exception):
                await asyncio.wait_for(conn.close(), self._db_timeout_s)

    async def drain(self, conn: asyncpg.Connection) -> int:
        """Publish one batch of outbox rows in id order; returns how many went out."""
        rows = await conn.fetch(
            "SELECT id, message_id, subject, payload FROM outbox ORDER BY id LIMIT $1", self._batch_size
        )
        if not rows:
            return 0
        # Pipelined on one connection, so JetStream stores them in this order.
        acks = [
            await self._js.publish_async(row["subject"], row["payload"], headers={"Nats-Msg-Id": str(row["message_id"])})
            for row in rows
        ]
        await asyncio.wait_for(asyncio.gather(*acks), self._publish_timeout_s)
        self._count_published(len(rows))
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [row["id"] for row in rows])
        return len(rows)

    def _count_published(self, n: int) -> None:
        PUBLISHED.inc(n)
        self._published += n
        if self._crash_after is not None and self._published >= self._crash_after:
            # Fault injection for tests: die after publishing, before the rows are deleted.
            log.error("crash_after_publishes reached (%d): exiting hard", self._published)
            os._exit(70)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    with suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _main(crash_after: int | None) -> None:
    settings = RuntimeSettings()
    nc = await nats.connect(settings.nats_servers, connect_timeout=settings.nats_timeout_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    relay = OutboxRelay(settings.database_url, nc.jetstream(), crash_after_publishes=crash_after)
    try:
        await relay.run(stop)
    finally:
        await nc.drain()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the outbox relay alone (the writers also run one).")
    parser.add_argument("--crash-after-publishes", type=int, default=None, help="fault injection for tests")
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main(parser.parse_args().crash_after_publishes))
