"""Shared fixtures: real NATS JetStream and real Postgres for the whole session.

By default both are embedded (started from their wheels in a temporary folder). Set
LIKENESS_TEST_NATS_URL / LIKENESS_TEST_DATABASE_URL to run the same suite against other
servers (e.g. the system ones); a fresh database is then created for the session.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.runtime import tracing
from services.runtime.database import create_engine
from services.runtime.eventstore import EventStore
from services.launcher.scratch import Backends, scratch_backends
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ensure_streams

REPO = Path(__file__).resolve().parent.parent

# The whole-system tests' fixtures (photo, fake ComfyUI) for tests/e2e and tests/browser alike.
pytest_plugins = ["tests.e2e.fixtures"]


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    with scratch_backends(
        tmp_path_factory.mktemp("backends"),
        nats_url=os.environ.get("LIKENESS_TEST_NATS_URL"),
        admin_database_url=os.environ.get("LIKENESS_TEST_DATABASE_URL"),
        database_prefix="likeness_test",
    ) as backends:
        yield backends


@pytest.fixture(scope="session")
def nats_url(backends: Backends) -> str:
    return backends.nats_url


@pytest.fixture(scope="session")
def database_url(backends: Backends) -> str:
    return backends.database_url


@pytest.fixture(scope="session")
def settings(backends: Backends) -> RuntimeSettings:
    """Short ack waits and retry delays so redelivery tests finish quickly."""
    return RuntimeSettings(
        service_name="tests",
        environment="test",
        nats_url=backends.nats_url,
        database_url=backends.database_url,
        ack_wait_s=2.0,
        retry_delay_s=0.2,
        max_deliver=3,
        graceful_timeout_s=5.0,
    )


@pytest.fixture(scope="session")
async def engine(settings: RuntimeSettings) -> AsyncIterator:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine) -> EventStore:
    return EventStore(engine)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_url, connect_timeout=5)
    await ensure_streams(client.jetstream(timeout=5))
    yield client
    await client.drain()


def service_env(backends: Backends, **extra: str) -> dict[str, str]:
    """Environment for a service or relay subprocess pointed at the test backends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIKENESS_")}
    env.update(LIKENESS_NATS_URL=backends.nats_url, LIKENESS_DATABASE_URL=backends.database_url,
               LIKENESS_ENVIRONMENT="test", PYTHONPATH=str(REPO), **extra)
    return env


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process finishes while the test runs, kept in memory (tracing tests)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall()
    provider.shutdown()
