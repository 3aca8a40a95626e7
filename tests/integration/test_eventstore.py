"""The event log on real Postgres: optimistic concurrency, idempotency, gap-safe tailing."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text

from contracts import REGISTRY, CharacterThresholdSet
from services.runtime.database import create_engine
from services.runtime.eventstore import ANY_VERSION, DuplicateEventId, EventStore, WrongExpectedVersion
from services.runtime.settings import RuntimeSettings, to_asyncpg_dsn
from tests.factories import new_stream, threshold_event

pytestmark = pytest.mark.integration


async def test_append_then_read_gives_back_the_same_typed_events(store: EventStore) -> None:
    stream = new_stream()
    batch = [threshold_event(stream, t) for t in (30.0, 45.5, 60.0)]
    result = await store.append(stream, 0, batch)
    assert result.stream_version == 3 and not result.idempotent
    recorded = await store.read_stream(stream)
    assert [r.envelope.seq for r in recorded] == [1, 2, 3]
    assert [r.envelope.event_id for r in recorded] == [e.event_id for e in batch]
    assert [r.envelope.open(REGISTRY) for r in recorded] == [e.open(REGISTRY) for e in batch]
    assert isinstance(recorded[0].envelope.open(REGISTRY), CharacterThresholdSet)
    assert [r.global_position for r in recorded] == sorted(r.global_position for r in recorded)
    assert await store.read_stream(stream, after_version=2) == recorded[2:]


async def test_several_streams_read_in_one_query_stop_at_a_global_position(store: EventStore) -> None:
    a, b, empty = new_stream(), new_stream(), new_stream()
    await store.append(a, 0, [threshold_event(a, 10.0), threshold_event(a, 20.0)])
    cut = (await store.append(b, 0, [threshold_event(b, 30.0)])).global_positions[-1]
    await store.append(a, 2, [threshold_event(a, 40.0)])  # after the cut: not read
    streams = await store.read_streams([a, b, empty], up_to_position=cut)
    assert set(streams) == {a, b}
    assert [r.envelope.seq for r in streams[a]] == [1, 2] and [r.envelope.seq for r in streams[b]] == [1]
    assert streams[a] == (await store.read_stream(a))[:2]


async def test_stale_expected_version_is_a_typed_conflict_and_writes_nothing(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, 0, [threshold_event(stream)])
    with pytest.raises(WrongExpectedVersion) as err:
        await store.append(stream, 0, [threshold_event(stream)])
    assert (err.value.expected, err.value.actual) == (0, 1)
    # An expected version ahead of the stream must not leave a hole either.
    with pytest.raises(WrongExpectedVersion):
        await store.append(stream, 5, [threshold_event(stream)])
    assert await store.stream_version(stream) == 1


async def test_reappending_the_same_event_ids_is_idempotent(store: EventStore) -> None:
    stream = new_stream()
    batch = [threshold_event(stream), threshold_event(stream)]
    first = await store.append(stream, 0, batch)
    again = await store.append(stream, 0, batch)
    assert again.idempotent and again.global_positions == first.global_positions
    assert len(await store.read_stream(stream)) == 2


async def test_an_event_id_used_by_another_stream_is_refused(store: EventStore) -> None:
    a, b = new_stream(), new_stream()
    event = threshold_event(a)
    await store.append(a, 0, [event])
    stolen = threshold_event(b, event_id=event.event_id)
    with pytest.raises(DuplicateEventId):
        await store.append(b, 0, [stolen])
    assert await store.stream_version(b) == 0


async def test_any_version_appends_at_the_head(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, 0, [threshold_event(stream)])
    result = await store.append(stream, ANY_VERSION, [threshold_event(stream)])
    assert result.stream_version == 2


async def test_the_log_refuses_update_and_delete(engine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(Exception, match="append-only"):
            await conn.execute(text("UPDATE events SET type = 'x'"))
        with pytest.raises(Exception, match="append-only"):
            await conn.execute(text("DELETE FROM events"))


async def test_two_concurrent_writers_lose_nothing_and_duplicate_no_version(store: EventStore) -> None:
    stream = new_stream()
    per_writer = 1000
    conflicts = {"a": 0, "b": 0}
    written: dict[str, list[uuid.UUID]] = {"a": [], "b": []}

    async def writer(name: str) -> None:
        for _ in range(per_writer):
            event = threshold_event(stream)
            while True:
                version = await store.stream_version(stream)
                try:
                    await store.append(stream, version, [event])
                    break
                except WrongExpectedVersion:
                    conflicts[name] += 1
            written[name].append(event.event_id)

    await asyncio.gather(writer("a"), writer("b"))
    recorded = await store.read_stream(stream)
    assert [r.envelope.seq for r in recorded] == list(range(1, 2 * per_writer + 1))
    ids = [r.envelope.event_id for r in recorded]
    assert len(set(ids)) == len(ids) == 2 * per_writer
    assert set(ids) == set(written["a"]) | set(written["b"])
    # Both writers really raced: each was told of conflicts, and each retried to success.
    assert conflicts["a"] > 0 and conflicts["b"] > 0


async def test_read_all_never_skips_a_row_behind_a_slow_transaction(store: EventStore, database_url: str) -> None:
    head = await store.read_all(after_position=0, limit=1_000_000)
    start = head[-1].global_position if head else 0
    slow, fast = new_stream(), new_stream()
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=10)
    try:
        tx = conn.transaction()
        await tx.start()
        # The slow writer takes a position first but commits last.
        await conn.execute(
            "INSERT INTO events (stream_id, stream_version, event_id, type, version, data, metadata) "
            "VALUES ($1, 1, $2, 'character.threshold_set', 1, $3::jsonb, $4::jsonb)",
            slow, uuid.uuid4(), '{"character_id": "%s", "threshold": 40}' % slow.removeprefix("character-"),
            '{"occurred_at": "2026-01-01T00:00:00+00:00", "correlation_id": "%s"}' % slow,
        )
        await store.append(fast, 0, [threshold_event(fast)])
        visible = [r.envelope.stream for r in await store.read_all(after_position=start)]
        assert fast not in visible, "a reader that passed the open transaction's position would lose its row"
        await tx.commit()
    finally:
        await conn.close()
    after = [r.envelope.stream for r in await store.read_all(after_position=start)]
    assert after.index(slow) < after.index(fast)


async def test_the_stores_connections_close_with_their_engine(settings: RuntimeSettings, database_url: str) -> None:
    spy = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=10)
    backends = "SELECT array_agg(pid) FROM pg_stat_activity WHERE datname = current_database()"
    try:
        before = set(await spy.fetchval(backends))
        engine = create_engine(settings)
        stores = [EventStore(engine) for _ in range(3)]
        streams = [new_stream() for _ in stores]
        await asyncio.gather(*(s.append(stream, 0, [threshold_event(stream)]) for s, stream in zip(stores, streams)))
        ours = set(await spy.fetchval(backends)) - before
        assert 0 < len(ours) <= settings.db_pool_size, "every store on one engine shares one pool"

        await engine.dispose()
        for _ in range(100):  # a backend leaves pg_stat_activity a moment after its client hangs up
            if not ours & set(await spy.fetchval(backends)):
                break
            await asyncio.sleep(0.05)
        assert not ours & set(await spy.fetchval(backends))

        # Like the engine itself, a store on a disposed engine connects again when next used.
        assert [r.envelope.stream for r in await stores[0].read_stream(streams[0])] == [streams[0]]
        await engine.dispose()
    finally:
        await spy.close()


async def test_warm_up_opens_connections_and_writes_nothing(settings: RuntimeSettings) -> None:
    engine = create_engine(settings)
    try:
        store = EventStore(engine)
        async with engine.connect() as conn:
            outbox_before = await conn.scalar(text("SELECT count(*) FROM outbox"))
        await store.warm(3)
        pool = store._driver.pool
        assert pool is not None and pool.get_size() >= 3 and pool.get_idle_size() >= 3
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM events WHERE stream_id = 'warm-up-never-written'")) == 0
            assert await conn.scalar(text("SELECT count(*) FROM outbox")) <= outbox_before
        # The warmed statements serve real appends as before.
        stream = new_stream()
        assert (await store.append(stream, 0, [threshold_event(stream)])).stream_version == 1
    finally:
        await engine.dispose()
