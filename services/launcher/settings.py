"""The local launcher's settings and its `run.json` record of what `likeness up` started."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_SERVICES", "HOST", "LauncherSettings", "RunInfo", "ServiceInfo"]

HOST = "127.0.0.1"
DEFAULT_SERVICES = ("gateway", "chat", "planner", "renderer", "facecheck", "delivery")
_RUN_FILE = "run.json"


class LauncherSettings(BaseSettings):
    """What `likeness` starts and where; unset URLs mean embedded NATS / Postgres under `state_dir`."""

    model_config = SettingsConfigDict(env_prefix="LIKENESS_", extra="ignore")

    nats_url: str | None = None
    database_url: str | None = None
    state_dir: Path = Path(".likeness")
    gateway_port: int = Field(default=8000, ge=1, le=65535)
    services: list[str] = Field(default_factory=lambda: list(DEFAULT_SERVICES))
    startup_timeout_s: float = Field(default=60.0, gt=0)
    # Above the services' own graceful timeout (20 s), so they get to finish in-flight work.
    stop_timeout_s: float = Field(default=30.0, gt=0)
    max_restarts: int = Field(default=5, ge=0)
    # The launcher's own lines (stderr and logs/up.log) in the services' format (see services.runtime.logs).
    log_format: Literal["text", "json"] = "text"
    # `likeness edit` with a key acts as that user through the gateway's HTTP API instead of the bus.
    api_key: SecretStr | None = None
    # The gateway `edit --api-key` talks to; unset: the one the running `up` recorded, else 127.0.0.1:gateway_port.
    gateway_url: str | None = None

    @field_validator("nats_url", "database_url", "api_key", "gateway_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        # `LIKENESS_NATS_URL= make up` should mean "embedded", not "connect to ''".
        return value or None

    @field_validator("services")
    @classmethod
    def _known_names(cls, names: list[str]) -> list[str]:
        if not names or len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
            raise ValueError("LIKENESS_SERVICES must be a non-empty JSON list of distinct module names")
        return names


class ServiceInfo(BaseModel):
    """One running service as recorded in run.json."""

    pid: int
    port: int
    log: str


class RunInfo(BaseModel):
    """Contents of `<state_dir>/run.json`, written by `up` once every service is ready."""

    pid: int
    state_dir: str
    gateway_url: str
    nats_url: str
    database_url: str
    nats_pid: int | None = None
    postgres_pid: int | None = None
    services: dict[str, ServiceInfo]
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @staticmethod
    def path(state_dir: Path) -> Path:
        """Where run.json lives for a state dir."""
        return Path(state_dir) / _RUN_FILE

    @classmethod
    def read(cls, state_dir: Path) -> RunInfo | None:
        """The recorded run, or None when there is none (or it is unreadable)."""
        try:
            return cls.model_validate_json(cls.path(state_dir).read_text())
        except (OSError, ValueError):
            return None

    def write(self, state_dir: Path) -> None:
        """Replace run.json atomically, so a reader never sees half a file."""
        tmp = self.path(state_dir).with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(tmp, self.path(state_dir))

    @classmethod
    def remove(cls, state_dir: Path) -> None:
        """Delete run.json if present."""
        cls.path(state_dir).unlink(missing_ok=True)

    def up_alive(self) -> bool:
        """Whether the recorded `up` process is still running."""
        try:
            proc = psutil.Process(self.pid)
            # A process born after run.json was written only reuses the pid of a dead `up`.
            return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= self.started_at.timestamp()
        except psutil.Error:
            return False
