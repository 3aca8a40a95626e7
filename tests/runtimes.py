"""Running a service's Runtime inside a test's event loop, and clearing up the consumers it made."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats

from contracts.subjects import COMMANDS_STREAM, DEAD_LETTERS_STREAM, EVENTS_STREAM
from services.runtime.runner import Runtime

__all__ = ["consumers_removed_after", "running"]


@asynccontextmanager
async def running(rt: Runtime, *, start_timeout_s: float = 60.0, stop_timeout_s: float = 30.0) -> AsyncIterator[Runtime]:
    """`rt` running in this process: entered once its start-up hooks have run, stopped on exit.

    A runtime that fails or hangs while starting raises here, naming why, instead of leaving a test
    to wait for messages nobody will handle.
    """
    started = asyncio.Event()

    @rt.on_startup
    async def ready(_: Runtime) -> None:
        started.set()

    task = asyncio.ensure_future(rt.run())
    waiting = asyncio.ensure_future(started.wait())
    await asyncio.wait([task, waiting], timeout=start_timeout_s, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        waiting.cancel()
        rt.request_stop()
        why = task.exception() if task.done() else f"not started within {start_timeout_s:g}s"
        raise RuntimeError(f"{rt.settings.service_name} did not start: {why}")
    try:
        yield rt
    finally:
        rt.request_stop()
        await asyncio.wait_for(task, stop_timeout_s)


async def _durables(nc: nats.NATS) -> set[tuple[str, str]]:
    """(stream, name) of every consumer on the commands, events and dead-letters streams."""
    js, found = nc.jetstream(timeout=5), set()
    for stream in (COMMANDS_STREAM, EVENTS_STREAM, DEAD_LETTERS_STREAM):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            found |= {(stream, c.name) for c in await js.consumers_info(stream)}
    return found


@asynccontextmanager
async def consumers_removed_after(nats_url: str) -> AsyncIterator[None]:
    """The durable consumers that whole services create inside the block are deleted when it ends, so the
    next test's services (same names, other settings) start from nothing."""
    nc = await nats.connect(nats_url, connect_timeout=5)
    try:
        before = await _durables(nc)
        yield
        for stream, name in await _durables(nc) - before:
            await nc.jetstream(timeout=5).delete_consumer(stream, name)
    finally:
        await nc.drain()
