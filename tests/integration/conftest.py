"""Fixtures shared by the gateway's integration tests.

`alice` and `bob` are two browsers (cookie sessions) on the `world` of the module that asks for
them: each test module defines its own module-scoped `world` (a GatewayWorld with its settings).
`requests_seen` collects the RequestChain commands the gateway sends while a test runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest

from contracts import Envelope
from contracts.subjects import command_subject

if TYPE_CHECKING:
    from tests.fakes.gateway_world import GatewayWorld


@pytest.fixture
async def alice(world: GatewayWorld) -> AsyncIterator[httpx.AsyncClient]:
    async with world.client() as client:
        yield client


@pytest.fixture
async def bob(world: GatewayWorld) -> AsyncIterator[httpx.AsyncClient]:
    async with world.client() as client:
        yield client


@pytest.fixture
async def requests_seen(world: GatewayWorld) -> AsyncIterator[list[Envelope]]:
    seen: list[Envelope] = []

    async def on(msg) -> None:
        seen.append(Envelope.from_bytes(msg.data))

    sub = await world.nc.subscribe(command_subject("chain.request"), cb=on)
    yield seen
    await sub.unsubscribe()
