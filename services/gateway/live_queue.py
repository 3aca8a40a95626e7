"""A listener of the live hub: a bounded queue of one stream's live items, woken once per item and
timed out without a timer per wait (one event wakes thousands of them: see `Listener`)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from prometheus_client import Counter

if TYPE_CHECKING:
    from services.gateway.live import LiveItem

__all__ = ["CLOSED", "LOST", "Listener"]

LOST = Counter("likeness_gateway_live_lost_total", "Live messages a slow listener had no room for")


class _Closed:
    """Put in every queue when the hub stops: readers end their streams."""


CLOSED = _Closed()

# A timer may fire this much before the deadline it was armed for (libuv rounds to milliseconds).
_TIMER_SLACK_S = 0.002


class _Mailbox:
    """A bounded FIFO with one waiter: `asyncio.Queue`'s work for a listener at a fraction of its cost."""

    __slots__ = ("items", "maxsize", "waiter")

    def __init__(self, maxsize: int) -> None:
        self.items: deque[LiveItem | _Closed] = deque()
        self.maxsize = maxsize
        self.waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self.items)

    def empty(self) -> bool:
        return not self.items

    def get_nowait(self) -> LiveItem | _Closed:
        if not self.items:
            raise asyncio.QueueEmpty
        return self.items.popleft()

    def put_nowait(self, item: LiveItem | _Closed) -> None:
        if len(self.items) >= self.maxsize:
            raise asyncio.QueueFull
        self.items.append(item)
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Listener:
    """A bounded queue of the items of one key.

    `next(timeout)` runs once per event per open stream, so a wait is one future and no timer (a timer
    per wait, `asyncio.timeout`, cost 4x the rest of a wake-up). One timer per listener, armed for the
    earliest deadline asked; firing before the current deadline, it re-arms for it instead of waking."""

    __slots__ = ("_deadline", "_timer", "_timer_at", "gone", "keys", "lost", "queue")

    def __init__(self, keys: tuple[str, ...], maxsize: int) -> None:
        self.keys = keys
        self.queue = _Mailbox(maxsize)
        self.lost = False
        self.gone = False
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    async def next(self, timeout_s: float) -> LiveItem | _Closed | None:
        """The next item, or None after `timeout_s` without one."""
        queue = self.queue
        if queue.items:
            return queue.items.popleft()
        loop = asyncio.get_running_loop()
        self._deadline = deadline = loop.time() + timeout_s
        if self._timer is None or self._timer_at > deadline:
            self._arm(loop, deadline)
        while not queue.items:
            if loop.time() >= deadline - _TIMER_SLACK_S:
                return None
            queue.waiter = waiter = loop.create_future()
            try:
                await waiter
            finally:
                queue.waiter = None
        return queue.items.popleft()

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = loop.call_at(at, self._expire, loop), at

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None  # if nobody waits, the next wait arms a timer of its own
        if self.queue.waiter is not None and not self.gone:
            if loop.time() < self._deadline - _TIMER_SLACK_S:
                self._arm(loop, self._deadline)  # a later wait moved the deadline on
            else:
                self.queue.wake()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def push(self, item: LiveItem | _Closed) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lost = True
            LOST.inc()
            if item is CLOSED:
                # The reader must still learn that the hub stopped: make room for the news.
                self.queue.get_nowait()
                self.queue.put_nowait(item)
