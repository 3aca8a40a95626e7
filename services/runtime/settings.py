"""Settings shared by every service; each service subclasses `RuntimeSettings` once.

Nothing else in a service reads the environment. Every variable has the `LIKENESS_` prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RuntimeSettings", "nats_servers", "to_asyncpg_dsn"]


class RuntimeSettings(BaseSettings):
    """Where NATS and Postgres are, where this process listens, and bus tuning."""

    model_config = SettingsConfigDict(env_prefix="LIKENESS_", extra="ignore")

    service_name: str = "likeness"
    environment: str = Field(default="dev", pattern="^(dev|test|prod)$")
    # One URL, or a comma-separated list of a cluster's nodes (clients fail over between them).
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

    # Where blobs live: the NATS object store, or an S3-compatible bucket (AWS, MinIO, Ceph, R2; see
    # services/runtime/blobs_s3.py). Without keys, the S3 client takes botocore's default credential chain.
    blob_store: Literal["nats", "s3"] = "nats"
    s3_endpoint_url: str | None = None
    # The endpoint browsers reach for presigned URLs, when it is not the one the services use.
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "likeness-blobs"
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_connect_timeout_s: float = Field(default=5.0, gt=0)
    s3_read_timeout_s: float = Field(default=20.0, gt=0)
    s3_max_attempts: int = Field(default=3, ge=1, le=10)
    s3_create_bucket: bool = False  # dev and test: make a missing bucket at start-up instead of refusing to start
    # The gateway answers an image with a 307 to a presigned URL living this long (S3 only) instead of the bytes.
    blob_presigned_urls: bool = False
    blob_url_ttl_s: int = Field(default=300, ge=1, le=7 * 24 * 3600)

    # Copies JetStream keeps of every stream (and of the blob bucket): 1 on a single server, 3 on a 3-node
    # cluster so that losing one node loses nothing and stops nothing. Never more than the cluster has nodes.
    # Start-up raises existing streams to it, never lowers them (services.runtime.streams.ensure_replicas).
    stream_replicas: int = Field(default=1, ge=1, le=5)

    # The HTTP listen queue (uvicorn's default 2048; the kernel caps it at net.core.somaxconn). The gateway asks
    # for more: after a restart every SSE client reconnects at once.
    http_backlog: int = Field(default=2048, ge=16, le=65535)
    # The collector's first-generation threshold (CPython's 700). The gateway raises it: with thousands of SSE
    # streams open, frequent older-generation passes walked every stream and stopped its loop for 0.1-2.7 s
    # (bench/sse.py prints the passes).
    gc_first_generation: int = Field(default=700, ge=100)

    # uvloop runs a service's event loop (and uvicorn then parses HTTP with httptools): measured in
    # bench/sse.py against plain asyncio, which stays selectable for debugging.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # Logs: one line a record on stderr, `text` for people or `json` for a log pipeline (services.runtime.logs).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Tracing (services/runtime/TRACING.md): off unless a collector's OTLP/HTTP base URL is given (only this
    # LIKENESS_ variable turns it on; the standard OTEL_EXPORTER_OTLP_ENDPOINT does not). Traces sampled
    # at this ratio at their root; every later service follows the root's choice.
    otel_exporter_otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://\S+$")
    otel_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    otel_export_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("otel_exporter_otlp_endpoint", mode="before")
    @classmethod
    def _blank_endpoint_is_off(cls, value: object) -> object:
        # `LIKENESS_OTEL_EXPORTER_OTLP_ENDPOINT=` (as deploy/k8s/base/config.env ships it) means off.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("nats_url")
    @classmethod
    def _nats_urls(cls, url: str) -> str:
        nats_servers(url)  # refuses a blank list or a URL of another scheme now, not at the first connect
        return url

    @property
    def nats_servers(self) -> list[str]:
        """The NATS URLs to connect to (a cluster's nodes), as nats-py and FastStream take them."""
        return nats_servers(self.nats_url)

    @model_validator(mode="after")
    def _s3_complete(self) -> RuntimeSettings:
        if self.blob_store != "s3":
            return self
        if not self.s3_bucket.strip():
            raise ValueError("LIKENESS_BLOB_STORE=s3 needs a bucket: set LIKENESS_S3_BUCKET")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both LIKENESS_S3_ACCESS_KEY_ID and LIKENESS_S3_SECRET_ACCESS_KEY, or neither "
                             "(then the AWS default credential chain is used)")
        if self.s3_prefix.startswith("/"):
            raise ValueError("LIKENESS_S3_PREFIX is a key prefix such as 'likeness/', without a leading '/'")
        if self.s3_create_bucket and self.environment == "prod":
            raise ValueError("LIKENESS_S3_CREATE_BUCKET is for dev and test; in prod create the bucket beforehand")
        return self

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        if not url.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://")):
            raise ValueError("LIKENESS_DATABASE_URL must be a postgresql:// URL")
        return url


def nats_servers(urls: str) -> list[str]:
    """"nats://a:4222, nats://b:4222" -> ["nats://a:4222", "nats://b:4222"] (nats-py takes a list, not a
    comma-separated string); a clear error for an empty list or a scheme NATS clients do not speak."""
    servers = [url.strip() for url in urls.split(",") if url.strip()]
    if not servers:
        raise ValueError("LIKENESS_NATS_URL names no server")
    for url in servers:
        if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError(f"LIKENESS_NATS_URL: {url!r} is not a nats://, tls://, ws:// or wss:// URL")
    return servers


def to_asyncpg_dsn(url: str) -> str:
    """SQLAlchemy URL (postgresql+asyncpg://...) -> plain DSN for asyncpg.connect."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
