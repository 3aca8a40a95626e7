"""Settings shared by every service; each service subclasses `RuntimeSettings` once.

Nothing else in a service reads the environment. Every variable has the `LIKENESS_` prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RuntimeSettings", "to_asyncpg_dsn"]


class RuntimeSettings(BaseSettings):
    """Where NATS and Postgres are, where this process listens, and bus tuning."""

    model_config = SettingsConfigDict(env_prefix="LIKENESS_", extra="ignore")

    service_name: str = "likeness"
    environment: str = Field(default="dev", pattern="^(dev|test|prod)$")
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/likeness"
    state_dir: Path = Path(".likeness")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)

    # Bus: how long a handler may take before JetStream redelivers, how often it tries,
    # and the back-off of a transient failure.
    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(default=5, ge=1)
    retry_delay_s: float = Field(default=1.0, ge=0)
    graceful_timeout_s: float = Field(default=20.0, gt=0)

    # Database pool and statement limits: explicit timeouts everywhere a call crosses the network.
    db_pool_size: int = Field(default=10, ge=1)
    db_timeout_s: float = Field(default=10.0, gt=0)
    nats_timeout_s: float = Field(default=5.0, gt=0)

    blob_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)

    # uvloop runs a service's event loop (and uvicorn then parses HTTP with httptools): measured in
    # bench/sse.py against plain asyncio, which stays selectable for debugging.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # Logs: one line a record on stderr, `text` for people or `json` for a log pipeline (services.runtime.logs).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        if not url.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://")):
            raise ValueError("LIKENESS_DATABASE_URL must be a postgresql:// URL")
        return url


def to_asyncpg_dsn(url: str) -> str:
    """SQLAlchemy URL (postgresql+asyncpg://...) -> plain DSN for asyncpg.connect."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
