"""Fixtures shared by the gateway's integration tests.

`alice` and `bob` are two browsers (cookie sessions) on the `world` of the module that asks for
them: each test module defines its own module-scoped `world` (a GatewayWorld with its settings).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from services.gateway.testing import GatewayWorld


@pytest.fixture
async def alice(world: GatewayWorld) -> AsyncIterator[httpx.AsyncClient]:
    async with world.client() as client:
        yield client


@pytest.fixture
async def bob(world: GatewayWorld) -> AsyncIterator[httpx.AsyncClient]:
    async with world.client() as client:
        yield client
