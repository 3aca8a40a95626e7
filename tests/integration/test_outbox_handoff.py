"""The in-process hand-off: a writer's commits reach JetStream without the relay, in order, and what the
hand-off never published (a crash after the commit, NATS away) is still published by the relay."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import nats
import pytest

from services.runtime.eventstore import EventStore, OutboxRow
from services.runtime.outbox import OutboxPublisher, OutboxRelay
from tests.factories import new_stream, threshold_event
from tests.integration.test_outbox import received_by_event_id

pytestmark = pytest.mark.integration


async def rows_left(engine, message_ids: list[str]) -> int:
    from sqlalchemy import text

    async with engine.connect() as conn:
        return await conn.scalar(text("SELECT count(*) FROM outbox WHERE message_id = ANY(CAST(:ids AS uuid[]))"),
                                 {"ids": message_ids})


async def wait_until_gone(engine, message_ids: list[str], timeout_s: float = 30.0) -> None:
    async def gone() -> None:
        while await rows_left(engine, message_ids):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(gone(), timeout_s)


@asynccontextmanager
async def running(*loops):
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(loop.run(stop)) for loop in loops]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def append_round_robin(store: EventStore, streams: list[str], n: int) -> list[str]:
    appended = []
    for i in range(n):
        stream = streams[i % len(streams)]
        event = threshold_event(stream)
        await store.append(stream, None, [event])
        appended.append(str(event.event_id))
    return appended


async def test_commits_reach_jetstream_in_order_without_a_relay(
    store: EventStore, engine, nc: nats.NATS, database_url: str
) -> None:
    fallbacks = []
    publisher = OutboxPublisher(database_url, nc.jetstream(timeout=5), fallback=lambda: fallbacks.append(1))
    store.on_commit(publisher.hand_off)
    streams = [new_stream() for _ in range(3)]
    async with running(publisher):
        # Concurrent writers on different streams, one at a time per stream, as the services write.
        appended = sum(await asyncio.gather(*(append_round_robin(store, [s], 40) for s in streams)), [])
        await wait_until_gone(engine, appended)  # published, acked, then deleted by the hand-off itself

    counts, seqs = await received_by_event_id(nc, streams, len(appended))
    assert {event_id: counts[event_id] for event_id in appended} == {event_id: 1 for event_id in appended}
    for stream in streams:
        assert seqs[stream] == list(range(1, 41)), f"{stream} arrived out of order"
    assert fallbacks == [], "the relay was never needed"


async def test_a_crash_between_commit_and_hand_off_is_published_by_the_relay(
    store: EventStore, engine, nc: nats.NATS, database_url: str
) -> None:
    lost: list[OutboxRow] = []
    store.on_commit(lost.extend)  # a process that dies right after its commit: nobody publishes these rows
    streams = [new_stream() for _ in range(2)]
    appended = await append_round_robin(store, streams, 20)
    assert [str(row.message_id) for row in lost] == appended
    assert await rows_left(engine, appended) == 20

    # Not woken by anyone: the relay finds them on its poll.
    async with running(OutboxRelay(database_url, nc.jetstream(timeout=5), poll_interval_s=0.1)):
        await wait_until_gone(engine, appended)

    counts, seqs = await received_by_event_id(nc, streams, len(appended))
    assert all(counts[event_id] == 1 for event_id in appended)
    assert seqs == {stream: list(range(1, 11)) for stream in streams}


async def test_a_failed_publish_leaves_the_rows_to_the_relay_then_the_hand_off_resumes(
    store: EventStore, engine, nc: nats.NATS, nats_url: str, database_url: str
) -> None:
    closed = await nats.connect(nats_url, connect_timeout=5)
    await closed.close()  # every publish on it fails, as while NATS is away
    woken = asyncio.Event()
    publisher = OutboxPublisher(database_url, closed.jetstream(timeout=1), fallback=woken.set, check_interval_s=0.05)
    store.on_commit(publisher.hand_off)
    stream = new_stream()
    async with running(publisher):
        first = await append_round_robin(store, [stream], 5)
        await asyncio.wait_for(woken.wait(), 10)
        assert publisher.suspended_upto is not None
        # Suspended: later commits are the relay's too, or they would overtake the ones it holds.
        second = await append_round_robin(store, [stream], 5)
        assert await rows_left(engine, first + second) == 10

        relay = OutboxRelay(database_url, nc.jetstream(timeout=5), poll_interval_s=0.05)
        async with running(relay):
            await wait_until_gone(engine, first + second)

        async def resumed() -> None:
            while publisher.suspended_upto is not None:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(resumed(), 10)
        # Resumed, on a connection that works now: no relay runs any more, yet these go out.
        publisher.js = nc.jetstream(timeout=5)
        third = await append_round_robin(store, [stream], 5)
        await wait_until_gone(engine, third)

    appended = first + second + third
    counts, seqs = await received_by_event_id(nc, [stream], len(appended))
    assert all(counts[event_id] == 1 for event_id in appended)
    assert seqs[stream] == list(range(1, 16))
