"""Latency from an append's commit to a consumer receiving the event through the outbox relay,
next to raw NATS publish -> receive measured the same way, in the same run.

    PYTHONPATH=. .venv/bin/python bench/bus.py

Everything runs in this process on one event loop: the writer (EventStore.append), an
OutboxRelay task (publishing with Nats-Msg-Id over its own nats-py JetStreamContext) and a
receiver on a second NATS connection. The relay is woken the way the Runtime wakes one in its
own process: `store.on_append(relay.wake)`, called after each committed append (there is no
NOTIFY trigger since migration 0002; without a wake the relay only polls once a second). One
extra row wakes it instead as a relay in another process is woken: an OutboxNotifier sends a
NOTIFY after the commit and the relay's LISTEN connection receives it. Events go one at a
time: the next is sent only after the previous one arrived plus a short pause, so this measures
latency, not queueing. Receipts are matched by event id (the Nats-Msg-Id header).

  t0 (outbox rows): right after `await store.append(...)` returns, i.e. the commit is done;
                    the "append call" row starts the clock before the append instead.
  t0 (raw rows):    right before the publish call (a JetStream publish returns only after its
                    ack, by which time a subscriber usually has the message already).
  t1:               first line of the receiver's callback (core / push), or when fetch()
                    returns the message (pull; acked after t1).

Target: p99 <= 5 ms from commit to receipt.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._backends import backends, machine  # noqa: E402
from contracts import CharacterThresholdSet, Envelope  # noqa: E402
from contracts.subjects import EVENTS_STREAM, event_filter, event_subject  # noqa: E402
from services.runtime.database import create_engine  # noqa: E402
from services.runtime.eventstore import EventStore  # noqa: E402
from services.runtime.outbox import OutboxNotifier, OutboxRelay  # noqa: E402
from services.runtime.settings import RuntimeSettings  # noqa: E402
from services.runtime.streams import ensure_streams  # noqa: E402

N_EVENTS = 2000
WARMUP = 50
PAUSE_S = 0.002
RECEIVE_TIMEOUT_S = 2.0
TARGET_P99_MS = 5.0


@dataclass
class Receiver:
    """Resolves the future registered under an event id when that message arrives."""

    waiting: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    strays: int = 0

    def expect(self, event_id: str) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[event_id] = future
        return future

    def arrived(self, msg: Msg, t1: float) -> None:
        future = self.waiting.pop((msg.headers or {}).get("Nats-Msg-Id", ""), None)
        if future is None or future.done():
            self.strays += 1
        else:
            future.set_result(t1)

    async def on_msg(self, msg: Msg) -> None:
        self.arrived(msg, time.perf_counter())


@dataclass
class Result:
    name: str
    latencies_ms: list[float]
    lost: int
    target: bool = False

    def row(self) -> str:
        lat = sorted(self.latencies_ms)
        if not lat:
            return f"{self.name:<52}{0:>6}  (nothing received)"
        p50, p99 = _percentile(lat, 50), _percentile(lat, 99)
        text = f"{self.name:<52}{len(lat):>6}{p50:>8.2f}{p99:>8.2f}{lat[-1]:>8.2f}{statistics.fmean(lat):>8.2f}"
        text += f"{self.lost:>6}"
        if self.target:
            text += f"   {'PASS' if p99 <= TARGET_P99_MS else 'MISS'} (p99 <= {TARGET_P99_MS:g} ms)"
        return text


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def envelope(stream: str, i: int) -> Envelope:
    return Envelope.wrap(
        CharacterThresholdSet(character_id=stream.removeprefix("character-"), threshold=float(i % 100)),
        event_id=uuid.uuid4(),
        stream=stream,
        occurred_at=datetime.now(UTC),
        correlation_id=stream,
        actor="bench",
    )


def new_stream(tag: str) -> str:
    return f"character-l{tag}{uuid.uuid4().hex[:12]}"


# A send: given one envelope, do the producing call; returns (t_start, t0) where t0 is the
# point the latency is measured from.
Send = Callable[[Envelope], Awaitable[tuple[float, float]]]


async def measure(receiver: Receiver, send: Send, stream: str, n: int) -> tuple[list[float], list[float], int]:
    """Latencies from t0 and from t_start (ms), and the count lost, for n events one at a time."""
    from_t0: list[float] = []
    from_start: list[float] = []
    lost = 0
    for i in range(n):
        env = envelope(stream, i)
        future = receiver.expect(str(env.event_id))
        t_start, t0 = await send(env)
        try:
            t1 = await asyncio.wait_for(future, RECEIVE_TIMEOUT_S)
        except asyncio.TimeoutError:
            lost += 1
            receiver.waiting.pop(str(env.event_id), None)
        else:
            from_t0.append((t1 - t0) * 1000)
            from_start.append((t1 - t_start) * 1000)
        await asyncio.sleep(PAUSE_S)
    return from_t0, from_start, lost


async def pull_loop(psub, receiver: Receiver, stop: asyncio.Event) -> None:
    """A pull consumer as the services run one: fetch (1 s expiry), then ack each message."""
    while not stop.is_set():
        try:
            msgs = await psub.fetch(1, timeout=1.0)
        except (asyncio.TimeoutError, nats.errors.TimeoutError):
            continue
        for msg in msgs:
            receiver.arrived(msg, time.perf_counter())
            await msg.ack()


async def main(nats_url: str, database_url: str) -> None:
    settings = RuntimeSettings(nats_url=nats_url, database_url=database_url, environment="test")
    engine = create_engine(settings)
    store = EventStore(engine)
    pub_nc = await nats.connect(nats_url, connect_timeout=5, name="bench-publisher")
    sub_nc = await nats.connect(nats_url, connect_timeout=5, name="bench-receiver")
    js = pub_nc.jetstream(timeout=5)
    sub_js = sub_nc.jetstream(timeout=5)
    await ensure_streams(js)

    relay = OutboxRelay(database_url, js)
    notifier = OutboxNotifier(database_url)
    # As the Runtime wires an in-process relay; `wake_by` switches to the cross-process path
    # (NOTIFY after commit -> the relay's LISTEN) for the one row that measures it.
    wake_by = {"path": "direct"}
    store.on_append(lambda: relay.wake() if wake_by["path"] == "direct" else notifier.poke())
    stop_relay = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(stop_relay))
    notifier_task = asyncio.create_task(notifier.run(stop_relay))
    deadline = time.monotonic() + 10
    while not relay.is_leader and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if not relay.is_leader:
        raise RuntimeError("the outbox relay did not become leader within 10 s")

    versions: dict[str, int] = {}

    async def outbox_send(env: Envelope) -> tuple[float, float]:
        t_start = time.perf_counter()
        await store.append(env.stream, versions.get(env.stream, 0), [env])
        t0 = time.perf_counter()
        versions[env.stream] = versions.get(env.stream, 0) + 1
        return t_start, t0

    async def core_send(env: Envelope) -> tuple[float, float]:
        subject, payload = event_subject(env.type, env.stream), env.to_bytes()
        t0 = time.perf_counter()
        await pub_nc.publish(subject, payload, headers={"Nats-Msg-Id": str(env.event_id)})
        return t0, t0

    async def js_send(env: Envelope) -> tuple[float, float]:
        subject, payload = event_subject(env.type, env.stream), env.to_bytes()
        t0 = time.perf_counter()
        await js.publish(subject, payload, headers={"Nats-Msg-Id": str(env.event_id)})
        return t0, t0

    results: list[Result] = []

    async def phase(label: str, send: Send, receiver: Receiver, *, start_row: str | None = None,
                    target: bool = False) -> None:
        stream = new_stream("w")
        await measure(receiver, send, stream, WARMUP)
        from_t0, from_start, lost = await measure(receiver, send, new_stream("m"), N_EVENTS)
        results.append(Result(label, from_t0, lost, target))
        if start_row:
            results.append(Result(start_row, from_start, lost))

    subs = []
    stop_pull = asyncio.Event()
    pull_task: asyncio.Task | None = None
    started = time.perf_counter()
    try:
        # Core NATS subscription on every event subject: the lowest-overhead receiver.
        core = Receiver()
        subs.append(await sub_nc.subscribe(event_filter(), cb=core.on_msg))
        await sub_nc.flush()
        await phase("core NATS publish -> core sub (baseline)", core_send, core)
        await phase("JetStream publish -> core sub (baseline)", js_send, core)
        await phase("outbox: commit -> core sub", outbox_send, core,
                    start_row="outbox: append call -> core sub (incl. append)", target=True)
        wake_by["path"] = "notify"
        try:
            await phase("outbox, woken by NOTIFY after commit -> core sub", outbox_send, core)
        finally:
            wake_by["path"] = "direct"
        await subs.pop().unsubscribe()

        # JetStream push consumer (ordered, ephemeral, new messages only), auto-acked by nats-py.
        push = Receiver()
        subs.append(await sub_js.subscribe(event_filter(), cb=push.on_msg, ordered_consumer=True,
                                           deliver_policy=DeliverPolicy.NEW))
        await phase("JetStream publish -> JS push consumer (baseline)", js_send, push)
        await phase("outbox: commit -> JS push consumer (ordered)", outbox_send, push, target=True)
        await subs.pop().unsubscribe()

        # Durable pull consumer with explicit acks: how the services consume.
        pull = Receiver()
        psub = await sub_js.pull_subscribe(
            event_filter(), durable="bench_latency", stream=EVENTS_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW, ack_wait=30),
        )
        pull_task = asyncio.create_task(pull_loop(psub, pull, stop_pull))
        await asyncio.sleep(0.05)
        await phase("JetStream publish -> JS pull consumer (baseline)", js_send, pull)
        await phase("outbox: commit -> JS pull consumer (fetch 1, ack)", outbox_send, pull, target=True)
    finally:
        measured_s = time.perf_counter() - started
        stop_pull.set()
        if pull_task is not None:
            with suppress(Exception):
                await asyncio.wait_for(pull_task, 3)
            with suppress(Exception):
                await psub.unsubscribe()
            with suppress(Exception):
                await js.delete_consumer(EVENTS_STREAM, "bench_latency")
        stop_relay.set()
        with suppress(Exception):
            await asyncio.wait_for(relay_task, 5)
        with suppress(Exception):
            await asyncio.wait_for(notifier_task, 5)
        for sub in subs:
            with suppress(Exception):
                await sub.unsubscribe()
        await sub_nc.drain()
        await pub_nc.drain()
        await engine.dispose()

    print()
    print(f"latency, {N_EVENTS} events per row, one at a time, {PAUSE_S * 1000:g} ms pause "
          f"(measured in {measured_s:.0f}s)")
    print(f"{'path':<52}{'n':>6}{'p50':>8}{'p99':>8}{'max':>8}{'mean':>8}{'lost':>6}   (ms)")
    for result in results:
        print(result.row())
    strays = core.strays + push.strays + pull.strays
    if strays:
        print(f"({strays} messages arrived that no one was waiting for: late or duplicate)")


if __name__ == "__main__":
    t = time.perf_counter()
    print(f"machine: {machine()}")
    with backends() as (nats_url, database_url):
        asyncio.run(main(nats_url, database_url))
    print(f"\ntotal {time.perf_counter() - t:.1f}s; machine at the end: {machine()}")
