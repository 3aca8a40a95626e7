"""Runs one service process: bus, event store, outbox relay, HTTP (ops + the service's own
routes), and a graceful shutdown on SIGTERM/SIGINT.

Shutdown order matters: stop pulling messages and let in-flight handlers finish (anything
unfinished is never acked, so JetStream redelivers it), then stop the relay, then HTTP, then
close the database pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
import uvloop
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.blobs import BlobStore, BlobUnavailable
from services.runtime.bus import Bus
from services.runtime.database import create_engine
from services.runtime.eventstore import EventStore
from services.runtime.logs import configure_logging
from services.runtime.ops import ReadinessCheck, add_ops_routes
from services.runtime.outbox import OutboxNotifier, OutboxRelay
from services.runtime.settings import RuntimeSettings
from services.runtime import tracing

__all__ = ["Runtime", "run_service"]

log = logging.getLogger(__name__)

StartupHook = Callable[["Runtime"], Awaitable[None]]

# A background task that dies is started again after 1 s, doubling to 30 s while it keeps dying
# within a minute of each start.
_FIRST_RESTART_S, _MAX_RESTART_S, _HEALTHY_RUN_S = 1.0, 30.0, 60.0

# Connections opened at start-up: a burst of first requests finds them ready (the pool grows beyond on demand).
_WARM_CONNECTIONS = 8


class Runtime:
    """The heavy resources of one service process, made at start-up and handed to its handlers."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        database: bool,
        relay: bool,
        blobs: bool = False,
        app: FastAPI | None = None,
    ) -> None:
        self.settings = settings
        self.bus = Bus(settings)
        self.engine: AsyncEngine | None = create_engine(settings) if database else None
        self.store: EventStore | None = EventStore(self.engine) if self.engine is not None else None
        self.app = app or FastAPI(title=f"likeness {settings.service_name}")
        self._relay_enabled = relay
        self._blobs_enabled = blobs
        self.blobs: BlobStore | None = None
        self._startup: list[StartupHook] = []
        self._shutdown: list[StartupHook] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        # Made here, before the service adds its routes, so the gateway can instrument its app.
        self._tracing = tracing.setup(settings)
        checks: dict[str, ReadinessCheck] = {"nats": self.bus.ready}
        if self.engine is not None:
            checks["postgres"] = self._database_ready
        add_ops_routes(self.app, settings.service_name, checks)

    def on_startup(self, hook: StartupHook) -> StartupHook:
        """Run `hook(runtime)` once NATS is connected and before any message is consumed."""
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: StartupHook) -> StartupHook:
        """Run `hook(runtime)` at shutdown, after consumers stopped and before the pools close."""
        self._shutdown.append(hook)
        return hook

    def request_stop(self) -> None:
        self._stop.set()

    def spawn(self, work: Callable[[], Awaitable[None]], name: str) -> None:
        """Run `work()` in the background for the life of the service (cancelled at shutdown); if it
        dies, the death is logged with its traceback and it is started again with back-off."""
        self._tasks.append(asyncio.ensure_future(_supervised(work, name)))
        self._tasks[-1].set_name(name)

    async def run(self) -> None:
        """Start everything, serve until asked to stop, then shut down in order."""
        await self.bus.connect()
        if self._blobs_enabled:
            try:
                self.blobs = await BlobStore.open(self.bus.js, settings=self.settings)
            except BlobUnavailable as exc:
                # An operator's fix (make the bucket, grant access), not a crash to retry: say so in one line.
                log.critical("%s cannot start: %s", self.settings.service_name, exc)
                raise
        for hook in self._startup:
            await hook(self)
        if self.store is not None:
            await self._warm_store(self.store)
        await self.bus.start()
        relay_stop = asyncio.Event()
        relay = None
        if self._relay_enabled:
            relay = OutboxRelay(self.settings.database_url, self.bus.js, db_timeout_s=self.settings.db_timeout_s)
            self.spawn(functools.partial(relay.run, relay_stop), "outbox-relay")
        if self.store is not None:
            notifier = OutboxNotifier(self.settings.database_url, timeout_s=self.settings.db_timeout_s)
            self.spawn(functools.partial(notifier.run, relay_stop), "outbox-notifier")
            # Each commit wakes the publishing relay at once (ours, or the leader elsewhere by NOTIFY).
            self.store.on_append(_wake_relay(relay, notifier))
        server = _QuietServer(uvicorn.Config(self.app, host=self.settings.http_host, port=self.settings.http_port,
                                             log_level="warning", log_config=None, access_log=False,
                                             lifespan="off", backlog=self.settings.http_backlog,
                                             # Each request in a fresh context: else asyncio (cpython#140947)
                                             # lets one request's current span leak into the next on the same
                                             # keep-alive connection, and traces nest requests in each other.
                                             reset_contextvars=True))
        http = asyncio.ensure_future(server.serve())
        log.info("%s started (http %s:%s)", self.settings.service_name, self.settings.http_host, self.settings.http_port)
        try:
            await _first_of(self._stop.wait(), http)
        finally:
            log.info("%s stopping", self.settings.service_name)
            await self.bus.stop()
            relay_stop.set()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            server.should_exit = True
            await asyncio.gather(http, return_exceptions=True)
            for hook in self._shutdown:
                await hook(self)
            if self.blobs is not None:
                await self.blobs.close()
            if self.engine is not None:
                await self.engine.dispose()
            # Last, so the spans of the shutdown itself are exported too.
            await asyncio.to_thread(tracing.shutdown, self._tracing)
            log.info("%s stopped", self.settings.service_name)

    async def _warm_store(self, store: EventStore) -> None:
        """Connect the event store's pool before the first message, so no request pays for it."""
        try:
            await asyncio.wait_for(store.warm(min(self.settings.db_pool_size, _WARM_CONNECTIONS)),
                                   self.settings.db_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the database may come later: handlers wait for it then
            log.warning("event store not warmed up at start (%s: %s)", type(exc).__name__, exc)

    async def _database_ready(self) -> bool:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            return (await conn.scalar(text("SELECT 1"))) == 1


async def _supervised(work: Callable[[], Awaitable[None]], name: str) -> None:
    delay = _FIRST_RESTART_S
    while True:
        started = time.monotonic()
        try:
            await work()
            return
        except Exception:
            log.exception("background task %s died; starting it again in %.0fs", name, delay)
        if time.monotonic() - started > _HEALTHY_RUN_S:
            delay = _FIRST_RESTART_S
        await asyncio.sleep(delay)
        delay = min(delay * 2, _MAX_RESTART_S)


def _wake_relay(relay: OutboxRelay | None, notifier: OutboxNotifier) -> Callable[[], None]:
    """Wake our own relay if it is the one publishing, else NOTIFY the one that is."""

    def wake() -> None:
        if relay is not None and relay.is_leader:
            relay.wake()
        else:
            notifier.poke()

    return wake


def _raise_open_files() -> None:
    """The open-file limit up to the hard limit: each SSE client is a socket, and 1024 is a common default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _QuietServer(uvicorn.Server):
    """Uvicorn without its own signal handlers: the runtime owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _first_of(*aws: Awaitable) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done() and task is not tasks[-1]:
                task.cancel()


def _service_name(settings: RuntimeSettings) -> str:
    """LIKENESS_SERVICE_NAME, else the package run as `python -m services.<name>`."""
    if "service_name" in settings.model_fields_set:
        return settings.service_name
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    parts = spec.name.split(".") if spec is not None else []
    return parts[1] if len(parts) >= 2 and parts[0] == "services" else settings.service_name


def run_service(build: Callable[[], Awaitable[Runtime]]) -> None:
    """Entry point of `python -m services.<name>`: build the runtime, run it until a signal."""
    settings = RuntimeSettings()
    configure_logging(_service_name(settings), settings.log_format, settings.log_level)
    _raise_open_files()

    async def main() -> None:
        runtime = await build()
        # What start-up loaded lives for the whole process: keep the collector from re-walking it.
        gc.freeze()
        gc.set_threshold(runtime.settings.gc_first_generation, *gc.get_threshold()[1:])
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runtime.request_stop)
        await runtime.run()

    if settings.event_loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())
