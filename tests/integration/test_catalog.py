"""The model and style catalog over NATS request/reply: the planner serves its registries, the gateway asks."""

from __future__ import annotations

import nats
import pytest

from services.gateway.catalog import CatalogClient
from services.gateway.errors import Unavailable
from services.planner.catalog import catalog_of, serve
from services.planner.planning.registry import Registry

pytestmark = pytest.mark.integration


async def test_the_gateway_reads_the_planners_catalog_and_keeps_it_when_the_planner_goes(nc: nats.NATS) -> None:
    registry = Registry.load()
    client = CatalogClient(lambda: nc, timeout_s=2.0, ttl_s=0.0)
    with pytest.raises(Unavailable, match="the planner is not running") as caught:
        await client.get()
    assert caught.value.code == "planner_unavailable"

    subscription = await serve(nc, catalog_of(registry))
    catalog = await client.get()
    assert [m.name for m in catalog.models] == list(registry.models)
    assert catalog.style_names() == list(registry.styles) and catalog.default_style == registry.default_style
    await subscription.unsubscribe()
    # Asked again (ttl 0) with nobody answering: the last catalog serves rather than an error.
    assert await client.get() == catalog
