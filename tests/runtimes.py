"""Running a service's Runtime inside a test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.runtime.runner import Runtime

__all__ = ["running"]


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
