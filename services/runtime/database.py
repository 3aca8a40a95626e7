"""The one place a SQLAlchemy engine is made: asyncpg driver, pool and timeouts from settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.runtime.settings import RuntimeSettings

__all__ = ["create_engine", "sqlalchemy_url"]


def sqlalchemy_url(url: str) -> str:
    """Any postgres URL -> the asyncpg flavour SQLAlchemy needs."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    raise ValueError(f"not a postgres URL: {url!r}")


def create_engine(settings: RuntimeSettings) -> AsyncEngine:
    """Autocommit engine: the log is written by single statements, so no BEGIN/COMMIT trips."""
    return create_async_engine(
        sqlalchemy_url(settings.database_url),
        isolation_level="AUTOCOMMIT",
        # Nothing is left open on a returned connection, so don't pay a ROLLBACK per checkin.
        pool_reset_on_return=None,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_timeout_s,
        connect_args={"timeout": settings.db_timeout_s, "command_timeout": settings.db_timeout_s},
    )
