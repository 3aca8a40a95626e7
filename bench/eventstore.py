"""Event store throughput and replay cost, next to raw asyncpg baselines measured in the same run.

    PYTHONPATH=. .venv/bin/python bench/eventstore.py [--profile] [--event-loop asyncio|uvloop]

Prints figures only (no assertions):
  * appends/s: one writer, one event per append, sequential (expected version known);
  * appends/s: 8 concurrent writers, each on its own stream (events/s in total);
  * the same two through SQLAlchemy's pool (each statement on a connection checked out of the
    engine, as the store did before it had its own asyncpg pool), to compare in the same run;
  * events/s: one writer, batches of 10 and of 100 events per append;
  * baseline: raw asyncpg single-row INSERT (autocommit, jsonb column) into a scratch table,
    one connection and 8 connections; ratio = our rate / raw rate;
  * diagnostics: the store's append statement (_APPEND, positional $1..$10) sent through bare
    asyncpg with pre-built parameters (what the server and the wire cost, without the store's
    Python work), and, for comparison only, the raw INSERT into a table with a per-statement
    NOTIFY trigger: what the outbox did before migration 0002 (a notifying commit takes a
    database-wide lock, so concurrent writers serialise). Writers now wake relays after commit;
  * replay of a 10,000-event stream (min / median of a few runs):
      - EventStore.replay(stream, REGISTRY) + a trivial fold: the production fold path (the
        planner's), typed messages validated from data::text, no Envelope per row; the target.
        Its time in the garbage collector is shown below it (the append phase's envelopes are
        dropped first, so the heap is closer to a service's);
      - read_stream + open every envelope with REGISTRY + the fold: the full-envelope path
        (audits), for comparison;
      - raw asyncpg fetches of the rows (the replay SELECT, and SELECT *) as baselines.
Targets: >= 5,000 appends/s; fold of 10,000 events <= 100 ms.

--profile: also cProfile one production replay + fold and print where its time goes.
--event-loop: asyncio (default, comparable with earlier figures) or uvloop (what services run on).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._backends import backends, machine, pg_settings  # noqa: E402
from contracts import REGISTRY, CharacterThresholdSet, Envelope  # noqa: E402
from contracts.subjects import event_subject  # noqa: E402
from services.runtime.database import create_engine  # noqa: E402
from services.runtime.eventstore import EventStore  # noqa: E402
from services.runtime.eventstore.rows import json_text, metadata_json  # noqa: E402
from services.runtime.eventstore.store import _APPEND, _REPLAY  # noqa: E402
from services.runtime.settings import RuntimeSettings, to_asyncpg_dsn  # noqa: E402

N_SEQ = 3000  # single writer, one event per append
N_WRITERS = 8
N_PER_WRITER = 400  # 3,200 events in total
N_BATCHED = 3000  # events per batched run
BATCHES = (10, 100)
N_RAW = 3000
FOLD_EVENTS = 10_000
FOLD_LOAD_BATCH = 500
FOLD_REPS = 7
WARMUP = 100

TARGET_APPENDS_S = 5000
TARGET_FOLD_MS = 100.0


class SQLAlchemyPathStore(EventStore):
    """The store with each statement on a connection checked out of SQLAlchemy's pool: the old path."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._sqlalchemy = engine

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        async with self._sqlalchemy.connect() as conn:
            raw = await conn.get_raw_connection()
            return await raw.driver_connection.fetch(query, *args)


def new_stream(tag: str) -> str:
    return f"character-b{tag}{uuid.uuid4().hex[:12]}"


def events_for(stream: str, n: int) -> list[Envelope]:
    """n cheap real contract events (a character's threshold changed), built before timing."""
    character_id = stream.removeprefix("character-")
    now = datetime.now(UTC)
    return [
        Envelope.wrap(
            CharacterThresholdSet(character_id=character_id, threshold=float(i % 100)),
            event_id=uuid.uuid4(),
            stream=stream,
            occurred_at=now,
            correlation_id=stream,
            actor="bench",
        )
        for i in range(n)
    ]


CPU: dict[str, float] = {}  # this process's CPU seconds per timed case (client-side cost)
GC_SECONDS = [0.0]  # time spent in the cyclic garbage collector, accumulated by _gc_timer
_gc_started = [0.0]


def _gc_timer(phase: str, _info: dict) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        GC_SECONDS[0] += time.perf_counter() - _gc_started[0]


async def timed(fn: Callable[[], Awaitable[object]], cpu_key: str | None = None) -> float:
    cpu, started = time.process_time(), time.perf_counter()
    await fn()
    elapsed = time.perf_counter() - started
    if cpu_key:
        CPU[cpu_key] = time.process_time() - cpu
    return elapsed


# --------------------------------------------------------------------------------------------- appends


async def append_one_by_one(store: EventStore, stream: str, envs: list[Envelope]) -> None:
    for version, env in enumerate(envs):
        await store.append(stream, version, [env])


async def append_batched(store: EventStore, stream: str, envs: list[Envelope], size: int) -> None:
    for start in range(0, len(envs), size):
        await store.append(stream, start, envs[start:start + size])


async def raw_inserts(
    conns: list[asyncpg.Connection], payload: str, n_per_conn: int, table: str = "bench_scratch"
) -> None:
    """Single-row INSERTs in autocommit: one round trip and one commit each, nothing else."""
    sql = f"INSERT INTO {table} (data) VALUES ($1::jsonb)"

    async def one(conn: asyncpg.Connection) -> None:
        for _ in range(n_per_conn):
            await conn.execute(sql, payload)

    await asyncio.gather(*(one(c) for c in conns))


# --------------------------------------------------------------------------------------------- replay


def fold(messages: list[tuple[int, object]]) -> tuple[int, float | None]:
    """The production fold's shape over replay()'s (version, message) pairs: a count and the last value."""
    count, last = 0, None
    for _version, message in messages:
        count += 1
        last = message.threshold  # type: ignore[attr-defined]
    return count, last


def fold_envelopes(recorded: list) -> tuple[int, float | None]:
    """Open every envelope (validate + upcast) and keep a count and the last value."""
    count, last = 0, None
    for rec in recorded:
        message = rec.envelope.open(REGISTRY)
        count += 1
        last = message.threshold
    return count, last


async def replay(store: EventStore, stream: str) -> tuple[float, float]:
    """The production path: EventStore.replay (fetch + validate each body) + the fold.
    (seconds, of which in the garbage collector): 10,000 new models trigger collections, and a
    full one walks every tracked object in the process, so its cost grows with the heap."""
    gc0, t0 = GC_SECONDS[0], time.perf_counter()
    count, _ = fold(await store.replay(stream, REGISTRY, after_version=0))
    elapsed = time.perf_counter() - t0
    assert count == FOLD_EVENTS, count
    return elapsed, GC_SECONDS[0] - gc0


async def envelope_replay(store: EventStore, stream: str) -> tuple[float, float, float]:
    """The full-envelope path: (total, read_stream, open+fold) seconds."""
    t0 = time.perf_counter()
    recorded = await store.read_stream(stream)
    t1 = time.perf_counter()
    count, _ = fold_envelopes(recorded)
    t2 = time.perf_counter()
    assert count == FOLD_EVENTS, count
    return t2 - t0, t1 - t0, t2 - t1


_RAW_READ = "SELECT * FROM events WHERE stream_id = $1 AND stream_version > 0 ORDER BY stream_version"


async def raw_fetch(conn: asyncpg.Connection, stream: str, sql: str = _RAW_READ, *args: object) -> float:
    t0 = time.perf_counter()
    rows = await conn.fetch(sql, stream, *args)
    elapsed = time.perf_counter() - t0
    assert len(rows) == FOLD_EVENTS
    return elapsed


async def raw_parse(conn: asyncpg.Connection, stream: str) -> float:
    """replay() without the pool checkout: bare asyncpg fetch of the replay SELECT + parse_json + fold."""
    t0 = time.perf_counter()
    rows = await conn.fetch(_REPLAY, stream, 0)
    count, _ = fold([(row[0], REGISTRY.parse_json(row[1], row[2], row[3])) for row in rows])
    elapsed = time.perf_counter() - t0
    assert count == FOLD_EVENTS
    return elapsed


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def append_args(stream: str, head: int, batch: list[Envelope]) -> list[object]:
    """What EventStore._insert binds to _APPEND's $1..$10, in order (mirrors it, events only)."""
    numbered = [env.model_copy(update={"seq": head + i}) for i, env in enumerate(batch, 1)]
    return [
        stream,  # $1 stream_id
        head,  # $2 expected head
        [e.event_id for e in numbered],  # $3 event ids
        [e.type for e in numbered],  # $4 types
        [e.version for e in numbered],  # $5 versions
        [json_text(e.data) for e in numbered],  # $6 data texts
        [metadata_json(e) for e in numbered],  # $7 metadata texts
        [e.event_id for e in numbered],  # $8 outbox message ids
        [event_subject(e.type, stream) for e in numbered],  # $9 subjects
        [e.to_bytes() for e in numbered],  # $10 payloads
    ]


async def raw_append_sql(conns: list[asyncpg.Connection], n_per_conn: int) -> float:
    """The append statement through bare asyncpg with its parameters built beforehand: what the
    server (plus the wire) costs per append, without the store's pool checkout and pydantic work."""
    work = []
    for k in range(len(conns)):
        stream = new_stream(f"q{k}")
        work.append([append_args(stream, i, [env]) for i, env in enumerate(events_for(stream, n_per_conn))])

    async def one(conn: asyncpg.Connection, argsets: list[list[object]]) -> None:
        for args in argsets:
            rows = await conn.fetch(_APPEND, *args)
            assert rows[0]["global_position"] is not None

    return await timed(lambda: asyncio.gather(*(one(c, w) for c, w in zip(conns, work))), f"bare{len(conns)}")


async def main(nats_url: str, database_url: str, profile: bool) -> None:
    print(await pg_settings(database_url))
    settings = RuntimeSettings(nats_url=nats_url, database_url=database_url, environment="test")
    engine = create_engine(settings)
    store = EventStore(engine)
    old_store = SQLAlchemyPathStore(engine)
    dsn = to_asyncpg_dsn(database_url)
    raw_conns = [await asyncpg.connect(dsn, timeout=10) for _ in range(N_WRITERS)]
    json_conn = await asyncpg.connect(dsn, timeout=10)
    await json_conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        await raw_conns[0].execute(
            "CREATE TABLE bench_scratch (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, data jsonb NOT NULL);"
            "CREATE TABLE bench_scratch_notify (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, data jsonb NOT NULL);"
            "CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN PERFORM pg_notify('likeness_bench', ''); RETURN NULL; END $$;"
            "CREATE TRIGGER bench_notify AFTER INSERT ON bench_scratch_notify"
            " FOR EACH STATEMENT EXECUTE FUNCTION bench_notify();"
        )
        sample = events_for(new_stream("s"), 1)[0]
        payload = json.dumps(sample.data)

        # Warm up both paths (pool connections, prepared statements, caches).
        warm = new_stream("w")
        await append_one_by_one(store, warm, events_for(warm, WARMUP))
        await asyncio.gather(*(store.stream_version(new_stream("w")) for _ in range(N_WRITERS)))
        warm = new_stream("w")
        await append_one_by_one(old_store, warm, events_for(warm, WARMUP))
        await asyncio.gather(*(old_store.stream_version(new_stream("w")) for _ in range(N_WRITERS)))
        await raw_inserts(raw_conns, payload, WARMUP // N_WRITERS)
        await raw_inserts(raw_conns, payload, WARMUP // N_WRITERS, table="bench_scratch_notify")
        await raw_append_sql(raw_conns, WARMUP // N_WRITERS)
        await raw_append_sql(raw_conns[:1], WARMUP)

        rows: list[tuple[str, int, int, float, bool]] = []  # (case, appends, events, seconds, concurrent)

        # Baselines first, then ours, then the baselines again: take the best of each side's runs
        # so a noisy neighbour on this small machine does not tilt the ratio one way.
        raw1 = [await timed(lambda: raw_inserts(raw_conns[:1], payload, N_RAW))]
        rawc = [await timed(lambda: raw_inserts(raw_conns, payload, N_RAW // N_WRITERS))]

        stream = new_stream("a")
        envs = events_for(stream, N_SEQ)
        seq_s = await timed(lambda: append_one_by_one(store, stream, envs), "seq")
        rows.append(("EventStore.append, 1 writer, 1 ev/append", N_SEQ, N_SEQ, seq_s, False))
        stream = new_stream("o")
        envs = events_for(stream, N_SEQ)
        old_seq_s = await timed(lambda: append_one_by_one(old_store, stream, envs), "old_seq")
        rows.append(("  same via SQLAlchemy checkout (old path)", N_SEQ, N_SEQ, old_seq_s, False))

        n_conc = N_WRITERS * N_PER_WRITER

        def writers(on: EventStore, tag: str) -> Callable[[], Awaitable[object]]:
            streams = [new_stream(f"{tag}{i}") for i in range(N_WRITERS)]
            per = {s: events_for(s, N_PER_WRITER) for s in streams}
            return lambda: asyncio.gather(*(append_one_by_one(on, s, per[s]) for s in streams))

        conc_s = await timed(writers(store, "c"), "conc")
        rows.append((f"EventStore.append, {N_WRITERS} writers, 1 ev/app", n_conc, n_conc, conc_s, True))
        old_conc_s = await timed(writers(old_store, "p"), "old_conc")
        rows.append(("  same via SQLAlchemy checkout (old path)", n_conc, n_conc, old_conc_s, True))

        batched: list[tuple[int, float]] = []  # (events per append, seconds)
        for size in BATCHES:
            stream = new_stream(f"b{size}")
            envs = events_for(stream, N_BATCHED)
            secs = await timed(lambda s=stream, e=envs, n=size: append_batched(store, s, e, n))
            rows.append((f"EventStore.append, 1 writer, {size} ev/append", N_BATCHED // size, N_BATCHED, secs, False))
            batched.append((size, secs))

        raw1.append(await timed(lambda: raw_inserts(raw_conns[:1], payload, N_RAW)))
        rawc.append(await timed(lambda: raw_inserts(raw_conns, payload, N_RAW // N_WRITERS)))
        raw1_rate = N_RAW / min(raw1)
        rawc_rate = (N_RAW // N_WRITERS * N_WRITERS) / min(rawc)

        # Diagnostics: what the append statement costs without the store's Python work, and (for
        # comparison only; no longer the system's behaviour) what the old outbox NOTIFY trigger
        # did to concurrent commits.
        n_diag = N_RAW // N_WRITERS * N_WRITERS
        diag = [
            ("append SQL via bare asyncpg, 1 conn", n_diag, n_diag, await raw_append_sql(raw_conns[:1], n_diag)),
            (f"append SQL via bare asyncpg, {N_WRITERS} conns", n_diag, n_diag,
             await raw_append_sql(raw_conns, n_diag // N_WRITERS)),
            (f"pre-0002 NOTIFY trigger: raw INSERT, {N_WRITERS} conns", n_diag, n_diag,
             await timed(lambda: raw_inserts(raw_conns, payload, n_diag // N_WRITERS, table="bench_scratch_notify"))),
        ]

        def line(case: str, appends: int, events: int, secs: float, base: float) -> str:
            return (f"{case:<42}{appends:>7}{events:>7}{secs:>6.2f}{appends / secs:>10.0f}{events / secs:>9.0f}"
                    f"{appends / secs / base:>7.2f}")

        print()
        print(f"{'append throughput':<42}{'apps':>7}{'events':>7}{'secs':>6}{'apps/s':>10}{'evts/s':>9}{'vs raw':>7}")
        print(line("raw INSERT jsonb, 1 conn (baseline)", N_RAW, N_RAW, min(raw1), raw1_rate))
        print(line(f"raw INSERT jsonb, {N_WRITERS} conns (baseline)", n_diag, n_diag, min(rawc), rawc_rate))
        for case, appends, events, secs, concurrent in rows:
            print(line(case, appends, events, secs, rawc_rate if concurrent else raw1_rate))
        print("diagnostics (same run)")
        for case, appends, events, secs in diag:
            print(line("  " + case, appends, events, secs, rawc_rate if "conns" in case else raw1_rate))
        print(f"  (raw baseline before/after ours, 1 conn: {N_RAW / raw1[0]:.0f} / {N_RAW / raw1[1]:.0f} inserts/s, "
              f"{N_WRITERS} conns: {n_diag / rawc[0]:.0f} / {n_diag / rawc[1]:.0f}; best taken. 'vs raw' compares"
              f" appends/s (commits) with the 1-conn or {N_WRITERS}-conn baseline)")
        print(f"  (this process's CPU per append: EventStore 1 writer {CPU['seq'] / N_SEQ * 1000:.2f} ms, "
              f"{N_WRITERS} writers {CPU['conc'] / n_conc * 1000:.2f} ms; old path 1 writer "
              f"{CPU['old_seq'] / N_SEQ * 1000:.2f} ms, {N_WRITERS} writers {CPU['old_conc'] / n_conc * 1000:.2f} ms; "
              f"bare asyncpg 1 conn {CPU['bare1'] / n_diag * 1000:.2f} ms, "
              f"{N_WRITERS} conns {CPU[f'bare{N_WRITERS}'] / n_diag * 1000:.2f} ms)")
        print(f"  (EventStore appends/s over the old path's: 1 writer {old_seq_s / seq_s:.2f}x, "
              f"{N_WRITERS} writers {old_conc_s / conc_s:.2f}x)")

        # Replay: one 10,000-event stream, loaded in batches. Drop the append phase's envelopes
        # first: they are bench ballast a planner process would not hold, and every full garbage
        # collection during a replay would walk them.
        envs = []
        gc.collect()
        gc.callbacks.append(_gc_timer)
        stream = new_stream("f")
        load_s = await timed(lambda: append_batched(store, stream, events_for(stream, FOLD_EVENTS), FOLD_LOAD_BATCH))
        await replay(store, stream)  # warm
        await envelope_replay(store, stream)
        await raw_fetch(raw_conns[0], stream, _REPLAY, 0)
        await raw_fetch(raw_conns[0], stream)
        await raw_parse(raw_conns[0], stream)
        runs = [await replay(store, stream) for _ in range(FOLD_REPS)]
        env_runs = [await envelope_replay(store, stream) for _ in range(FOLD_REPS)]
        replay_sql_runs = [await raw_fetch(raw_conns[0], stream, _REPLAY, 0) for _ in range(FOLD_REPS)]
        raw_runs = [await raw_fetch(raw_conns[0], stream) for _ in range(FOLD_REPS)]
        json_runs = [await raw_fetch(json_conn, stream) for _ in range(FOLD_REPS)]
        parse_runs = [await raw_parse(raw_conns[0], stream) for _ in range(FOLD_REPS)]

        def stats(values: list[float]) -> str:
            return f"{ms(min(values))} {ms(statistics.median(values))}"

        print()
        print(f"replay of a {FOLD_EVENTS:,}-event stream (loaded in {load_s:.2f}s), {FOLD_REPS} runs"
              f"{'min ms':>19}{'median':>9}")
        print(f"{'  EventStore.replay(REGISTRY) + fold (production path, target)':<68}"
              f"{stats([r[0] for r in runs])}")
        print(f"{'    of which in the garbage collector':<68}{stats([r[1] for r in runs])}")
        print(f"{'  read_stream + open(REGISTRY) + fold (full envelopes, audits)':<68}"
              f"{stats([r[0] for r in env_runs])}")
        print(f"{'    of which read_stream (rows -> RecordedEvent)':<68}{stats([r[1] for r in env_runs])}")
        print(f"{'    of which open every envelope + fold':<68}{stats([r[2] for r in env_runs])}")
        print("  baselines: bare asyncpg on its own connection")
        print(f"{'    fetch of the replay SELECT (4 columns, data::text)':<68}{stats(replay_sql_runs)}")
        print(f"{'    same fetch + REGISTRY.parse_json per row + fold':<68}{stats(parse_runs)}")
        print(f"{'    fetch SELECT * of the same rows, jsonb as text':<68}{stats(raw_runs)}")
        print(f"{'    fetch SELECT *, jsonb decoded with json.loads':<68}{stats(json_runs)}")

        seq_rate = N_SEQ / seq_s
        conc_rate = n_conc / conc_s
        fold_min, fold_med = min(r[0] for r in runs), statistics.median(r[0] for r in runs)
        print()
        print("targets")
        print(f"  appends/s >= {TARGET_APPENDS_S:,}, 1 writer              {seq_rate:>8.0f}   "
              f"{verdict(seq_rate >= TARGET_APPENDS_S)}   (raw single-row INSERT, 1 conn: {raw1_rate:.0f}/s)")
        print(f"  appends/s >= {TARGET_APPENDS_S:,}, {N_WRITERS} writers             {conc_rate:>8.0f}   "
              f"{verdict(conc_rate >= TARGET_APPENDS_S)}   (raw INSERT, {N_WRITERS} conns: {rawc_rate:.0f}/s)")
        for size, secs in batched:
            print(f"  events/s, 1 writer, {size} ev/append (info)".ljust(46)
                  + f"{N_BATCHED / secs:>8.0f}          ({N_BATCHED // size / secs:.0f} appends/s)")
        print(f"  fold of {FOLD_EVENTS:,} events <= {TARGET_FOLD_MS:.0f} ms (median)  {fold_med * 1000:>8.1f}   "
              f"{verdict(fold_med * 1000 <= TARGET_FOLD_MS)}   (min {fold_min * 1000:.1f} ms)")

        if profile:
            await profile_replay(store, stream)
    finally:
        if _gc_timer in gc.callbacks:
            gc.callbacks.remove(_gc_timer)
        for conn in [*raw_conns, json_conn]:
            await conn.close()
        await engine.dispose()


async def profile_replay(store: EventStore, stream: str) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    await replay(store, stream)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(25)
    print("\ncProfile of one EventStore.replay + fold (profiler overhead inflates the totals):")
    print(out.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="store_true", help="cProfile one replay and print the hot spots")
    parser.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="this process's event loop (services run on uvloop); run both to compare")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"machine: {machine()}; event loop {args.event_loop}")
    with backends() as (nats_url, database_url):
        (uvloop.run if args.event_loop == "uvloop" else asyncio.run)(main(nats_url, database_url, args.profile))
    print(f"\ntotal {time.perf_counter() - started:.1f}s; machine at the end: {machine()}")
