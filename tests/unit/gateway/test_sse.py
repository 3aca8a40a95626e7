"""The chain event stream's rules, on an in-memory log and the hub's dispatch: replay, then live,
each version once and in order, gaps refilled from the log, terminal events close the stream."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest

from contracts import (
    ChainCompleted,
    ChainPlanned,
    ChainRequested,
    Envelope,
    ImageRef,
    PlannedStep,
    RenderProgress,
    RenderWaiting,
)
from contracts.subjects import event_subject, live_subject
from services.gateway.errors import BadRequest
from services.gateway.live import CLOSED, LiveHub
from services.gateway.sse import StreamHeads, chain_events, parse_last_event_id
from services.runtime.eventstore import RecordedEvent

CHAIN = uuid.UUID(int=7)
STREAM = f"chain-{CHAIN}"
REF = ImageRef(sha256="a" * 64, media_type="image/png", width=64, height=64, bytes=10)
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def event(seq: int) -> Envelope:
    """Version `seq` of the chain: requested, planned, then planned again as filler, completed at 10."""
    if seq == 1:
        message = ChainRequested(chain_id=CHAIN, character_id="mia", user_id="u", request_text="x",
                                 reference_image=REF)
    elif seq == 10:
        message = ChainCompleted(chain_id=CHAIN, final_image=REF, step_images=(REF,))
    else:
        message = ChainPlanned(chain_id=CHAIN, steps=(PlannedStep(index=0, kind="pose", prompt="p", width=512,
                                                                  height=512, seed=seq, model="m", template="t",
                                                                  steps=4, cfg=1.0),), planner="rules")
    return Envelope.wrap(message, event_id=uuid.uuid5(CHAIN, str(seq)), stream=STREAM, occurred_at=NOW,
                         correlation_id=STREAM, seq=seq)


class MemoryLog:
    def __init__(self) -> None:
        self.events: list[Envelope] = []
        self.reads = 0

    def add(self, *seqs: int) -> None:
        self.events += [event(s) for s in seqs]

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        self.reads += 1
        return [RecordedEvent(e.seq, NOW, e) for e in self.events if e.stream == stream_id and e.seq > after_version]


def publish(hub: LiveHub, seq: int) -> None:
    envelope = event(seq)
    hub.dispatch(event_subject(envelope.type, STREAM), envelope.to_bytes())


class Reader:
    """Reads frames off the generator; `ids()` returns the persisted versions seen so far."""

    def __init__(self, log: MemoryLog, hub: LiveHub, after: int = 0, heartbeat_s: float = 30.0,
                 queue_size: int | None = None) -> None:
        self.listener = hub.subscribe(STREAM)
        if queue_size is not None:
            self.listener.queue.maxsize = queue_size
        self.stream = chain_events(STREAM, after, hub=hub, store=log, heartbeat_s=heartbeat_s,
                                   preview_max_chars=10_000, listener=self.listener)
        self.frames: list[bytes] = []
        self.done = False

    async def read(self, count: int, timeout: float = 2.0) -> list[bytes]:
        got = []
        for _ in range(count):
            try:
                frame = await asyncio.wait_for(self.stream.__anext__(), timeout)
            except StopAsyncIteration:
                self.done = True
                break
            got.append(frame)
            self.frames.append(frame)
        return got

    def ids(self) -> list[int]:
        return [int(f.split(b"\n")[0][4:]) for f in self.frames if f.startswith(b"id: ")]


async def test_the_log_is_replayed_then_live_events_follow_and_the_end_closes() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(1, 2)
    reader = Reader(log, hub)
    retry, first, second = await reader.read(3)
    assert retry == b"retry: 2000\n\n"
    assert first.startswith(b"id: 1\nevent: chain.requested\ndata: {")
    assert json.loads(first.split(b"data: ", 1)[1])["seq"] == 1
    log.add(3)
    publish(hub, 3)
    publish(hub, 2)  # a late duplicate
    log.add(*range(4, 11))
    for seq in range(4, 11):
        publish(hub, seq)
    await reader.read(20)
    assert reader.ids() == list(range(1, 11)) and reader.done
    assert hub.listeners(STREAM) == 0


async def test_a_version_that_jumps_ahead_refills_the_gap_from_the_log() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(1, 2)
    reader = Reader(log, hub)
    await reader.read(3)
    log.add(3, 4, 5)
    publish(hub, 5)  # 3 and 4 were never seen live
    await reader.read(3)
    assert reader.ids() == [1, 2, 3, 4, 5]
    publish(hub, 4)
    log.add(6)
    publish(hub, 6)
    await reader.read(1)
    assert reader.ids() == [1, 2, 3, 4, 5, 6]


async def test_a_resumed_stream_starts_after_the_last_event_id() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(*range(1, 6))
    reader = Reader(log, hub, after=3)
    await reader.read(3)
    assert reader.ids() == [4, 5]
    log.add(6)
    publish(hub, 6)
    await reader.read(1)
    assert reader.ids() == [4, 5, 6]


async def test_resuming_after_the_end_closes_at_once() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(*range(1, 11))
    reader = Reader(log, hub, after=10)
    assert await reader.read(5) == [b"retry: 2000\n\n"] and reader.done


async def test_a_heartbeat_pings_and_finds_events_whose_live_copy_never_came() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(1)
    reader = Reader(log, hub, heartbeat_s=0.05)
    await reader.read(2)
    log.add(2, 3)
    frames = await reader.read(3)
    assert frames[0] == b": ping\n\n" and reader.ids() == [1, 2, 3]


async def test_a_slow_reader_whose_queue_overflowed_is_resynchronised_from_the_log() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(1)
    reader = Reader(log, hub, queue_size=2)
    await reader.read(2)
    log.add(*range(2, 8))
    for seq in range(2, 8):
        publish(hub, seq)  # only 2 fit; the listener is marked lost
    assert reader.listener.lost
    await reader.read(6)
    assert reader.ids() == list(range(1, 8))


async def test_closing_the_hub_ends_every_stream() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(1)
    reader = Reader(log, hub, queue_size=1)
    await reader.read(2)
    publish(hub, 1)  # fills the queue; the close must still get through
    hub.close()
    await reader.read(3)
    assert reader.done


async def test_progress_is_streamed_live_with_the_queue_position() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(1)
    reader = Reader(log, hub)
    await reader.read(2)
    progress = RenderProgress(chain_id=CHAIN, step=0, attempt=1, value=2, max=8, queue_position=3)
    envelope = Envelope.wrap(progress, event_id=uuid.uuid4(), stream=STREAM, occurred_at=NOW, correlation_id=STREAM)
    hub.dispatch(live_subject(progress.type, STREAM), envelope.to_bytes())
    frames = await reader.read(2)
    assert frames[0].startswith(b"event: progress\ndata: ") and b'"queue_position":3' in frames[0]
    assert frames[1] == b'event: queue\ndata: {"position":3,"step":0,"attempt":1}\n\n'


async def test_waiting_for_a_render_backend_is_streamed_live() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(1)
    reader = Reader(log, hub)
    await reader.read(2)
    waiting = RenderWaiting(chain_id=CHAIN, step=0, attempt=2, waited_s=1.5, limit_s=30)
    envelope = Envelope.wrap(waiting, event_id=uuid.uuid4(), stream=STREAM, occurred_at=NOW, correlation_id=STREAM)
    hub.dispatch(live_subject(waiting.type, STREAM), envelope.to_bytes())
    (frame,) = await reader.read(1)
    assert frame == (b'event: waiting\ndata: {"chain_id":"%s","step":0,"attempt":2,"waited_s":1.5,"limit_s":30.0}\n\n'
                     % str(CHAIN).encode())


async def test_the_hub_delivers_by_stream_id_and_marks_listeners_that_fall_behind() -> None:
    hub = LiveHub(queue_size=2)
    seen: list[str] = []
    hub.observe(seen.append)
    with hub.listen(STREAM) as mine, hub.listen("chain-other") as other:
        for seq in (1, 2, 3):
            publish(hub, seq)
        assert mine.queue.qsize() == 2 and mine.lost and other.queue.empty()
        hub.dispatch("likeness.evt.chain.planned", b"{}")  # no stream id token: ignored
        hub.dispatch(event_subject("chain.planned", "chain-other"), b"not json")
        assert other.queue.empty()
        hub.close()
        assert mine.queue.get_nowait() is not CLOSED and mine.queue.get_nowait() is CLOSED
    assert hub.listeners(STREAM) == 0 and len(seen) == 4


async def test_a_listener_hands_over_what_is_queued_waits_for_more_or_gives_up() -> None:
    hub = LiveHub()
    with hub.listen(STREAM) as listener:
        assert await listener.next(0.01) is None
        publish(hub, 1)
        assert (await listener.next(0.01)).seq == 1
        later = asyncio.get_running_loop().call_later(0.02, publish, hub, 2)
        assert (await listener.next(5.0)).seq == 2
        later.cancel()
        hub.close()
        assert await listener.next(5.0) is CLOSED


async def test_a_wait_keeps_its_own_deadline_when_the_listener_reuses_one_timer() -> None:
    # One timer per listener, armed by the first wait: a later, longer wait must not end when that timer
    # fires, and a later, shorter one must not outlive its own timeout.
    hub = LiveHub()
    with hub.listen(STREAM) as listener:
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, publish, hub, 1)
        assert (await listener.next(0.05)).seq == 1
        loop.call_later(0.15, publish, hub, 2)
        assert (await listener.next(5.0)).seq == 2  # not None when the 0.05 s timer fires
        assert await asyncio.wait_for(listener.next(0.01), 1.0) is None
        assert listener.queue.empty()


@pytest.mark.parametrize(("header", "query", "after"), [
    ("7", None, 7), (" 7 ", 3, 7), (None, 3, 3), (None, None, 0), ("", 0, 0), (str(2**63 - 1), None, 2**63 - 1),
])
def test_last_event_id_comes_from_the_header_or_the_query(header, query, after) -> None:
    assert parse_last_event_id(header, query) == after


@pytest.mark.parametrize("header", ["junk", "-1", "1.5", "99999999999999999999999999999999", str(2**63), "\u0667"])
def test_a_last_event_id_that_no_stream_sent_is_a_400(header: str) -> None:
    with pytest.raises(BadRequest, match="Last-Event-ID must be the `id:`") as caught:
        parse_last_event_id(header.encode().decode("unicode_escape"), None)
    assert caught.value.code == "invalid_last_event_id"


async def test_stream_heads_ask_the_log_once_per_period_for_every_reader_of_a_stream() -> None:
    class Db:
        asked = 0

        async def stream_version(self, stream_id: str) -> int:
            Db.asked += 1
            await asyncio.sleep(0.01)
            return 5

    heads = StreamHeads(Db(), ttl_s=0.2)
    assert await asyncio.gather(*(heads.version(STREAM) for _ in range(100))) == [5] * 100
    assert Db.asked == 1
    await heads.version("chain-other")
    await asyncio.sleep(0.25)
    await heads.version(STREAM)
    assert Db.asked == 3


async def test_a_heartbeat_skips_the_log_read_when_the_head_is_not_ahead() -> None:
    log, hub = MemoryLog(), LiveHub()
    log.add(1)

    class Heads:
        async def version(self, stream_id: str) -> int:
            return max(e.seq for e in log.events)

    listener = hub.subscribe(STREAM)
    stream = chain_events(STREAM, 0, hub=hub, store=log, heartbeat_s=0.05, preview_max_chars=10,
                          listener=listener, heads=Heads())
    frames = [await stream.__anext__() for _ in range(4)]
    assert frames[2:] == [b": ping\n\n", b": ping\n\n"] and log.reads == 1
    log.add(2)
    while not (frame := await stream.__anext__()).startswith(b"id: "):
        pass
    assert frame.startswith(b"id: 2\n") and log.reads == 2
    await stream.aclose()
