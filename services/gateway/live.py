"""The live hub: ONE core-NATS subscription per subject family for the whole process, fanned out
in-process to the listeners of each stream (a chain, a conversation, a character).

A thousand clients following chains cost a thousand queues here and still one subscription per
family on the NATS connection. Each message is decoded once, whatever the number of listeners,
and its SSE frame is rendered once too (`LiveItem.frame`).

Every subject ends with the stream or correlation id (`likeness.evt.chain.completed.chain-<id>`,
`likeness.live.render.progress.chain-<id>`), which is the key listeners register under.

A listener whose queue is full is marked `lost` instead of blocking the hub: its reader goes back
to the log for what it missed (persisted events are never lost, only their live copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter, Gauge

from contracts.subjects import PREFIX
from services.gateway.live_queue import CLOSED, Listener
from services.gateway.sse_frames import sse_frame

__all__ = ["CLOSED", "FAMILIES", "Listener", "LiveHub", "LiveItem"]

log = logging.getLogger(__name__)

# The subject families the gateway follows: chain and character events, chat events and token
# deltas, render progress and previews.
FAMILIES = ("evt.chain", "evt.character", "evt.chat", "live.render", "live.chat")

LISTENERS = Gauge("likeness_gateway_live_listeners", "In-process listeners of the live hub")
RECEIVED = Counter("likeness_gateway_live_messages_total", "Messages the live hub received", ["family"])


class LiveItem:
    """One message as the hub received it: the envelope (decoded once) and its raw JSON."""

    __slots__ = ("_frame", "_memo", "envelope", "key", "persisted", "raw", "received_at", "seq", "type")

    def __init__(self, key: str, persisted: bool, envelope: dict[str, Any], raw: bytes) -> None:
        self.key = key
        self.persisted = persisted
        self.envelope = envelope
        self.raw = raw
        self.type: str = envelope.get("type", "")
        seq = envelope.get("seq")
        self.seq: int | None = seq if isinstance(seq, int) else None
        self.received_at = time.monotonic()
        self._frame: bytes | None = None
        self._memo: dict[str, Any] = {}

    @property
    def data(self) -> dict[str, Any]:
        data = self.envelope.get("data")
        return data if isinstance(data, dict) else {}

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """`make()` once per item, shared by every listener (e.g. a rendered frame)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    async def amemo(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """`await make()` once per item; listeners asking at the same time share the one result."""
        if key not in self._memo:
            self._memo[key] = asyncio.ensure_future(make())
        return await self._memo[key]

    @property
    def frame(self) -> bytes:
        """The SSE frame of a persisted event (id = stream version, event = type), rendered once."""
        if self._frame is None:
            self._frame = sse_frame(self.type, self.raw, self.seq)
        return self._frame


class LiveHub:
    """Subscribes once per family; `listen(key)` registers a listener for the life of a `with` block."""

    def __init__(self, *, queue_size: int = 1000, families: tuple[str, ...] = FAMILIES) -> None:
        self._queue_size = queue_size
        self._families = families
        self._listeners: defaultdict[str, set[Listener]] = defaultdict(set)
        self._subscriptions: list[Subscription] = []
        self._observers: list = []
        self.closed = False

    async def start(self, nc: nats.NATS) -> None:
        for family in self._families:
            # Generous pending limits: a burst must queue in this process, not be dropped by nats-py.
            sub = await nc.subscribe(f"{PREFIX}.{family}.>", cb=self._on_message,
                                     pending_msgs_limit=1_000_000, pending_bytes_limit=1024 * 1024 * 1024)
            self._subscriptions.append(sub)
        log.info("live hub subscribed to %s", ", ".join(self._families))

    def observe(self, callback) -> None:
        """Call `callback(subject)` for every persisted event received (e.g. to wake the projector)."""
        self._observers.append(callback)

    def subscribe(self, *keys: str) -> Listener:
        """A listener of every message whose stream/correlation id is one of `keys`; `unsubscribe` it."""
        listener = Listener(keys, self._queue_size)
        if self.closed:
            listener.push(CLOSED)
        for key in keys:
            self._listeners[key].add(listener)
        LISTENERS.inc()
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        """Stop delivering to `listener` (idempotent)."""
        if listener.gone:
            return
        listener.gone = True
        listener.close()
        LISTENERS.dec()
        for key in listener.keys:
            found = self._listeners.get(key)
            if found is not None:
                found.discard(listener)
                if not found:
                    del self._listeners[key]

    @contextmanager
    def listen(self, *keys: str) -> Iterator[Listener]:
        """`subscribe` for the life of a `with` block."""
        listener = self.subscribe(*keys)
        try:
            yield listener
        finally:
            self.unsubscribe(listener)

    def listeners(self, key: str) -> int:
        return len(self._listeners.get(key, ()))

    def close(self) -> None:
        """End every stream that is listening (at shutdown, so open SSE responses finish)."""
        self.closed = True
        for listeners in list(self._listeners.values()):
            for listener in list(listeners):
                listener.push(CLOSED)

    async def stop(self) -> None:
        self.close()
        for sub in self._subscriptions:
            # The connection may already be closed at shutdown.
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subscriptions.clear()

    def dispatch(self, subject: str, raw: bytes) -> None:
        """Hand one message to its listeners (the subscription callback; public for tests)."""
        parts = subject.split(".")
        if len(parts) < 5:
            return
        persisted = parts[1] == "evt"
        RECEIVED.labels(f"{parts[1]}.{parts[2]}").inc()
        if persisted:
            for observer in self._observers:
                observer(subject)
        key = parts[-1]
        listeners = self._listeners.get(key)
        if not listeners:
            return
        try:
            envelope = json.loads(raw)
        except ValueError:
            log.warning("live hub: not JSON on %s", subject)
            return
        if not isinstance(envelope, dict):
            return
        item = LiveItem(key, persisted, envelope, raw)
        for listener in list(listeners):
            listener.push(item)

    async def _on_message(self, msg: Msg) -> None:
        self.dispatch(msg.subject, msg.data)
