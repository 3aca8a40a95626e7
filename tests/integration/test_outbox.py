"""The outbox relay as a real process: killed after publishing, restarted, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import Envelope
from contracts.subjects import EVENTS_STREAM
from services.runtime.eventstore import EventStore
from tests.conftest import Backends, service_env
from tests.factories import new_stream, threshold_event

pytestmark = pytest.mark.integration


def start_relay(backends: Backends, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.runtime.outbox", *args],
        env=service_env(backends),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def outbox_rows(engine) -> int:
    from sqlalchemy import text

    async with engine.connect() as conn:
        return await conn.scalar(text("SELECT count(*) FROM outbox"))


async def wait_until_drained(engine, timeout_s: float = 60.0) -> None:
    async def drained() -> None:
        while await outbox_rows(engine):
            await asyncio.sleep(0.1)

    await asyncio.wait_for(drained(), timeout_s)


async def received_by_event_id(nc: nats.NATS, streams: list[str], expected: int) -> tuple[Counter, dict[str, list[int]]]:
    """Read every stored message of these streams once; count event ids, collect seqs per stream."""
    js = nc.jetstream(timeout=5)
    counts: Counter = Counter()
    seqs: dict[str, list[int]] = {s: [] for s in streams}
    for stream in streams:
        sub = await js.pull_subscribe(
            f"likeness.evt.character.*.{stream}", durable=None, stream=EVENTS_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        while True:
            try:
                batch = await sub.fetch(500, timeout=1.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                break
            for msg in batch:
                counts[msg.headers["Nats-Msg-Id"]] += 1
                seqs[stream].append(Envelope.from_bytes(msg.data).seq)
        await sub.unsubscribe()
    assert sum(counts.values()) >= expected
    return counts, seqs


async def test_relay_killed_between_publish_and_delete_then_restarted(
    backends: Backends, store: EventStore, engine, nc: nats.NATS
) -> None:
    streams = [new_stream() for _ in range(4)]
    appended: list[str] = []
    for i in range(300):
        stream = streams[i % 4]
        event = threshold_event(stream)
        await store.append(stream, None, [event])
        appended.append(str(event.event_id))
    # Committed to Postgres, not yet on NATS: no relay runs.
    crashing = start_relay(backends, "--crash-after-publishes", "100")
    assert crashing.wait(timeout=60) == 70, crashing.stderr.read().decode()[-2000:]
    assert await outbox_rows(engine) > 0, "the crash must leave published rows undeleted"

    relay = start_relay(backends)
    try:
        await wait_until_drained(engine)
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(timeout=30) == 0

    counts, seqs = await received_by_event_id(nc, streams, len(appended))
    assert {event_id: counts[event_id] for event_id in appended} == {event_id: 1 for event_id in appended}
    for stream in streams:
        assert seqs[stream] == list(range(1, 76)), f"{stream} arrived out of order"


async def test_relay_sigkilled_while_writers_append(backends: Backends, store: EventStore, engine, nc: nats.NATS) -> None:
    streams = [new_stream() for _ in range(3)]
    appended: list[str] = []

    keep_writing = asyncio.Event()
    keep_writing.set()

    async def write(at_least: int) -> None:
        # Writes until the relay has been killed (and at least `at_least` events), so the kill
        # always lands while appends are still coming, however slowly the relay starts.
        i = 0
        while keep_writing.is_set() or i < at_least:
            stream = streams[i % 3]
            event = threshold_event(stream)
            await store.append(stream, None, [event])
            appended.append(str(event.event_id))
            i += 1

    first_published = asyncio.Event()

    async def on_first(_: object) -> None:
        first_published.set()

    watcher = await nc.subscribe(f"likeness.evt.character.*.{streams[0]}", cb=on_first)
    relay = start_relay(backends)
    writing = asyncio.ensure_future(write(450))
    # Kill it mid-stream: once it has published something, while the writer still writes.
    await asyncio.wait_for(first_published.wait(), 30)
    relay.kill()
    keep_writing.clear()
    await watcher.unsubscribe()
    relay.wait(timeout=10)
    await writing
    relay = start_relay(backends)
    try:
        await wait_until_drained(engine)
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=30)

    counts, seqs = await received_by_event_id(nc, streams, len(appended))
    assert all(counts[event_id] == 1 for event_id in appended)
    for i, stream in enumerate(streams):
        written = len(appended[i::3])
        assert seqs[stream] == list(range(1, written + 1))


