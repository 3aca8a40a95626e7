"""Server-Sent Event streams: a chain's events (resumable), and a streamed chat reply.

A chain stream sends every persisted event once, in order, as `id: <stream version>`,
`event: <type>`, `data: <envelope JSON>`; then live ones until a terminal event has been sent.
Resuming after `Last-Event-ID: k` sends k+1, k+2, ... exactly once:

1. subscribe to the live hub first, so nothing that happens from now on can be missed;
2. replay from Postgres everything after k;
3. drain live messages, dropping any version at or below the last one sent; a version that jumps
   past last + 1 (a live copy was missed, or a slow client's queue overflowed) re-reads the gap
   from Postgres, where every published event already is (the outbox publishes after commit).

Each heartbeat (`: ping`) also re-reads the log, so a stream whose live copy of the terminal event
was lost still ends. Progress, preview, queue-position and waiting (no render backend reachable
yet) events are live only and have no id.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client import Histogram

from contracts import CHAIN_ENDS
from services.gateway.db import Database
from services.gateway.errors import BadRequest
from services.gateway.live import CLOSED, Listener, LiveHub, LiveItem
from services.gateway.metrics import SSE_CLIENTS
from services.gateway.sse_frames import compact_json, live_frames, sse_frame
from services.runtime import tracing
from services.runtime.eventstore import EventStore

__all__ = ["MAX_EVENT_ID", "SSE_HEADERS", "StreamHeads", "chain_events", "chat_reply_events", "parse_last_event_id"]

# Stream versions are Postgres bigints.
MAX_EVENT_ID = 2**63 - 1

DELIVERY = Histogram("likeness_gateway_sse_delivery_seconds",
                     "From the live hub receiving an event to its SSE frame taken by the server, per client",
                     buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))

SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
# How long a browser waits before reconnecting on its own (the `retry:` field), in milliseconds.
_RETRY_MS = 2000


class StreamHeads:
    """The newest version of each stream, read from the log at most once per `ttl_s` however many
    streams ask: a thousand clients of one chain cost one query per heartbeat, not a thousand."""

    def __init__(self, db: Database, *, ttl_s: float, max_streams: int = 100_000) -> None:
        self._db, self._ttl_s, self._max = db, ttl_s, max_streams
        self._cache: dict[str, tuple[float, asyncio.Future[int]]] = {}

    async def version(self, stream_id: str) -> int:
        now = time.monotonic()
        cached = self._cache.get(stream_id)
        if cached is None or now - cached[0] > self._ttl_s or (cached[1].done() and cached[1].exception()):
            if len(self._cache) >= self._max:
                self._cache.clear()
            cached = (now, asyncio.ensure_future(self._db.stream_version(stream_id)))
            self._cache[stream_id] = cached
        return await asyncio.shield(cached[1])


def parse_last_event_id(header: str | None, query: int | None) -> int:
    """The version to resume after: the header a reconnecting browser sends, else ?last_event_id=.

    A header that is not a stream version (a non-negative 64-bit integer, as every `id:` this gateway
    sends) is a 400: it did not come from one of our streams."""
    if header is not None and header.strip():
        value = header.strip()
        if not value.isascii() or not value.isdigit() or int(value) > MAX_EVENT_ID:
            raise BadRequest(f"Last-Event-ID must be the `id:` of an event this stream sent (an integer from 0 to "
                             f"{MAX_EVENT_ID}), not {value[:40]!r}", code="invalid_last_event_id")
        return int(value)
    return query if query is not None and query > 0 else 0


async def chain_events(
    stream_id: str,
    after: int,
    *,
    hub: LiveHub,
    store: EventStore,
    heartbeat_s: float,
    preview_max_chars: int,
    listener: Listener | None = None,
    heads: StreamHeads | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body of GET /chains/{id}/events."""
    listener = listener or hub.subscribe(stream_id)
    # Streams opened together must not tick together: spread their heartbeats over a fifth of the period.
    period = heartbeat_s * random.uniform(0.8, 1.0)
    SSE_CLIENTS.labels("chain").inc()
    try:
        yield f"retry: {_RETRY_MS}\n\n".encode()
        last = after
        frames, last, ended = await _from_log(store, stream_id, last)
        for frame in frames:
            yield frame
        if ended or (not frames and last and await _resumed_past_the_end(store, stream_id, last)):
            return
        while True:
            item = await listener.next(period)
            if item is None:
                yield b": ping\n\n"
                if heads is not None and await heads.version(stream_id) <= last:
                    continue
                frames, last, ended = await _from_log(store, stream_id, last)
                for frame in frames:
                    yield frame
                if ended:
                    return
                continue
            if item is CLOSED:
                return
            if listener.lost or (item.persisted and item.seq is not None and item.seq > last + 1):
                listener.lost = False
                frames, last, ended = await _from_log(store, stream_id, last)
                for frame in frames:
                    yield frame
                if ended:
                    return
            if item.persisted:
                if item.seq is None or item.seq != last + 1:
                    continue
                last = item.seq
                # One span per event and gateway, by whichever stream sends it first: at 10,000 streams a span
                # per client would be thousands a second, each telling the same thing.
                item.memo("traced", lambda: tracing.sent(item.envelope.get("trace"), message_type=item.type,
                                                         stream=stream_id, seq=item.seq))
                yield item.frame
                # Resumed once the server took the frame: the gateway's own share of the delivery time.
                DELIVERY.observe(time.monotonic() - item.received_at)
                if item.type in CHAIN_ENDS:
                    return
            else:
                for frame in await live_frames(item, preview_max_chars):
                    yield frame
    finally:
        SSE_CLIENTS.labels("chain").dec()
        hub.unsubscribe(listener)


async def _from_log(store: EventStore, stream_id: str, after: int) -> tuple[list[bytes], int, bool]:
    """Frames of the stream's events after `after`, the last version sent, and whether it ended."""
    frames, last, ended = [], after, False
    for recorded in await store.read_stream(stream_id, after_version=after):
        envelope = recorded.envelope
        if envelope.seq is None or envelope.seq <= last:
            continue
        last = envelope.seq
        tracing.sent(envelope.trace, message_type=envelope.type, stream=stream_id, seq=envelope.seq)
        frames.append(sse_frame(envelope.type, envelope.model_dump_json(), envelope.seq))
        if envelope.type in CHAIN_ENDS:
            ended = True
            break
    return frames, last, ended


async def _resumed_past_the_end(store: EventStore, stream_id: str, last: int) -> bool:
    """A client resuming at or past the terminal event (any `Last-Event-ID` beyond a finished chain's
    end) has nothing more to wait for: the stream closes instead of sending heartbeats for ever."""
    recorded = await store.read_stream(stream_id, after_version=max(0, last - 1))
    if recorded:
        return recorded[0].envelope.type in CHAIN_ENDS
    # Past the head: ended if the chain's last event is terminal.
    tail = await store.read_stream(stream_id)
    return bool(tail) and tail[-1].envelope.type in CHAIN_ENDS


async def chat_reply_events(
    listener: Listener,
    *,
    hub: LiveHub,
    db: Database,
    conversation_stream: str,
    conversation_id: str,
    message_id: str,
    heartbeat_s: float,
    timeout_s: float,
    now: Callable[[], float],
    on_chain: Callable[[str, str], Awaitable[None]] | None = None,
    opening: bytes = b"",
) -> AsyncIterator[bytes]:
    """The SSE body of POST /chat/stream: `delta`s, then `reply` (or `error`); `image` names a chain.

    `on_chain(chain_id, request_text)` is awaited before the client hears of a chain the message
    started, so the gateway can answer for that chain before the planner has recorded it.
    `opening` (frames) goes first, before `accepted`: POST /chat/voice sends its `transcript` there.
    """
    deadline = now() + timeout_s
    chain_id: str | None = None
    deltas = 0
    SSE_CLIENTS.labels("chat").inc()
    try:
        yield f"retry: {_RETRY_MS}\n\n".encode()
        if opening:
            yield opening
        yield sse_frame("accepted", compact_json({"conversation_id": conversation_id, "message_id": message_id}))
        while (left := deadline - now()) > 0:
            item = await listener.next(min(left, heartbeat_s))
            if item is None:
                yield b": ping\n\n"
                answers = await db.chat_answers(conversation_stream, message_id)
                items = [LiveItem(conversation_stream, True, envelope, b"") for envelope in answers]
            else:
                if item is CLOSED:
                    yield sse_frame("error", compact_json({
                        "error": "shutting_down", "detail": "the gateway is restarting; send the message again"}))
                    return
                items = [item]
            for current in items:
                data, kind = current.data, current.type
                if kind == "chat.token_delta" and str(data.get("in_reply_to") or message_id) == message_id:
                    if data.get("index") == 0 and deltas:
                        yield sse_frame("reset", compact_json({"message_id": data.get("message_id")}))
                    deltas += 1
                    yield sse_frame("delta", compact_json({"delta": data.get("delta", ""), "index": data.get("index"),
                                                    "message_id": data.get("message_id")}))
                elif kind == "chat.image_requested" and str(data.get("message_id")) == message_id:
                    chain_id = str(data.get("chain_id"))
                    if on_chain is not None:
                        await on_chain(chain_id, str(data.get("request_text") or ""))
                    yield sse_frame("image", compact_json(_chain_links(chain_id)))
                elif kind == "chat.picture_selected" and str(data.get("message_id")) == message_id:
                    # "Go back to the previous one": that picture is shown again, the next edit starts there.
                    picked = str(data["chain_id"]) if data.get("chain_id") else None
                    yield sse_frame("picked", compact_json({"chain_id": picked,
                                                            "from": "picture" if picked else "reference photo"}))
                elif kind == "chat.message_refused" and str(data.get("message_id")) == message_id:
                    yield sse_frame("error", compact_json({"error": data.get("rule", "refused"),
                                                    "detail": data.get("reason", "the message was refused")}))
                    return
                elif kind == "chat.character_replied" and str(data.get("in_reply_to")) == message_id:
                    chain_id = str(data["chain_id"]) if data.get("chain_id") else chain_id
                    yield sse_frame("reply", compact_json(_reply_body(data, conversation_id, message_id, chain_id)))
                    return
        yield sse_frame("error", compact_json({
            "error": "chat_timeout",
            "detail": f"no reply within {timeout_s:g}s; the chat service may be down or busy. Send the message again"}))
    finally:
        SSE_CLIENTS.labels("chat").dec()
        hub.unsubscribe(listener)


def _chain_links(chain_id: str) -> dict[str, Any]:
    return {"chain_id": chain_id, "job_id": chain_id, "chain_url": f"/chains/{chain_id}",
            "events_url": f"/chains/{chain_id}/events"}


def _reply_body(data: dict[str, Any], conversation_id: str, message_id: str, chain_id: str | None) -> dict[str, Any]:
    body = {
        "conversation_id": conversation_id,
        "message_id": message_id,
        "reply_id": data.get("message_id"),
        "text": data.get("text", ""),
        "offline": bool(data.get("offline")),
        "model": data.get("model"),
        "prompt_tokens": data.get("prompt_tokens", 0),
        "completion_tokens": data.get("completion_tokens", 0),
        "cost_usd": data.get("cost_usd", 0.0),
        "needs_reference": bool(data.get("needs_reference")),
        "login_required": bool(data.get("login_required")),
        "chain_id": chain_id,
    }
    if chain_id:
        body.update(_chain_links(chain_id))
    return body
