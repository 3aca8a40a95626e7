"""The one place database connections are made: the SQLAlchemy engine, and beside it a plain
asyncpg pool for the event log's single-statement hot paths, both sized and timed from settings.
"""

from __future__ import annotations

import asyncio
from weakref import WeakKeyDictionary

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from services.runtime.settings import RuntimeSettings, to_asyncpg_dsn

__all__ = ["DriverPool", "create_engine", "driver_pool", "sqlalchemy_url"]

_DEFAULTS = RuntimeSettings.model_fields


def sqlalchemy_url(url: str) -> str:
    """Any postgres URL -> the asyncpg flavour SQLAlchemy needs."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    raise ValueError(f"not a postgres URL: {url!r}")


def create_engine(settings: RuntimeSettings) -> AsyncEngine:
    """Autocommit engine: the log is written by single statements, so no BEGIN/COMMIT trips."""
    engine = create_async_engine(
        sqlalchemy_url(settings.database_url),
        isolation_level="AUTOCOMMIT",
        # Nothing is left open on a returned connection, so don't pay a ROLLBACK per checkin.
        pool_reset_on_return=None,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_timeout_s,
        connect_args={"timeout": settings.db_timeout_s, "command_timeout": settings.db_timeout_s},
    )
    _attach(engine, size=settings.db_pool_size, timeout_s=settings.db_timeout_s)
    return engine


class DriverPool:
    """A plain asyncpg pool for single autocommit statements, opened on first use.

    SQLAlchemy's pool checkout alone costs more client CPU than a short statement does
    (bench/eventstore.py), so the event store's hot paths take their connections from here.
    Every statement sent through it must leave no session state behind (no LISTEN, SET,
    open transaction): connections go back without asyncpg's reset round trip.
    """

    def __init__(self, dsn: str | None, *, size: int, timeout_s: float, pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self._dsn, self._size = dsn, size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()

    @classmethod
    def wrapping(cls, pool: asyncpg.Pool, *, timeout_s: float = _DEFAULTS["db_timeout_s"].default) -> DriverPool:
        """A pool the caller made and will close."""
        return cls(None, size=0, timeout_s=timeout_s, pool=pool)

    async def open(self) -> asyncpg.Pool:
        """The pool, connecting it on first use (concurrent first callers share one)."""
        async with self._opening:
            if self.pool is None:
                if self._dsn is None:
                    raise RuntimeError("the pool handed to this store is gone")
                self.pool = await asyncpg.create_pool(
                    self._dsn,
                    # Connections are made as concurrency needs them and then kept, as SQLAlchemy's
                    # pool keeps them: an idle-expiry timer re-armed on every release costs CPU per call.
                    min_size=1,
                    max_size=self._size,
                    max_inactive_connection_lifetime=0,
                    timeout=self.timeout_s,
                    command_timeout=self.timeout_s,
                    reset=_keep_session,
                )
                self._loop = asyncio.get_running_loop()
            return self.pool

    async def close(self) -> None:
        """Close the pool if this object opened it; it opens again on next use, like a disposed engine."""
        if self._dsn is None or self.pool is None:
            return
        pool, self.pool = self.pool, None
        try:
            await asyncio.wait_for(pool.close(), self.timeout_s)
        except TimeoutError:
            pass  # cancelling close() made asyncpg terminate the connections still in use

    def _close_with_engine(self) -> None:
        if self.pool is None or self._dsn is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is not running:
            # Inherited across a fork, or left on a finished loop: not this process's to close.
            self.pool = None
            return
        try:
            # AsyncEngine.dispose() runs the sync dispose, and so this hook, inside SQLAlchemy's
            # greenlet, where a coroutine can be awaited: the pool is closed before dispose() returns.
            await_only(self.close())
        except MissingGreenlet:
            self.pool = None  # a sync Engine.dispose() cannot wait; the connections close with the process


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release (asyncpg still rolls back an open transaction itself)."""


# One pool per engine, shared by every EventStore made on it, closed by engine.dispose().
_POOLS: WeakKeyDictionary[Engine, DriverPool] = WeakKeyDictionary()


def driver_pool(engine: AsyncEngine) -> DriverPool:
    """The asyncpg pool beside `engine`: same URL; sized and timed like it when create_engine made it."""
    found = _POOLS.get(engine.sync_engine)
    if found is None:
        found = _attach(engine, size=_DEFAULTS["db_pool_size"].default, timeout_s=_DEFAULTS["db_timeout_s"].default)
    return found


def _attach(engine: AsyncEngine, *, size: int, timeout_s: float) -> DriverPool:
    dsn = to_asyncpg_dsn(engine.url.render_as_string(hide_password=False))
    pool = _POOLS[engine.sync_engine] = DriverPool(dsn, size=size, timeout_s=timeout_s)
    event.listen(engine.sync_engine, "engine_disposed", lambda _engine: pool._close_with_engine())
    return pool
