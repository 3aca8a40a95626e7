"""The model and style catalog, asked of the planner (which owns the registries) and kept for a minute."""

from __future__ import annotations

import time
from collections.abc import Callable

import nats
import nats.errors
from pydantic import ValidationError

from contracts.catalog import CATALOG_SUBJECT, Catalog
from services.gateway.errors import Unavailable, UpstreamTimeout

__all__ = ["CatalogClient"]


class CatalogClient:
    """`await catalog.get()`: the planner's catalog, asked at most once per `ttl_s` (it changes with a deploy)."""

    def __init__(self, connection: Callable[[], nats.NATS], *, timeout_s: float, ttl_s: float = 60.0) -> None:
        """`connection()`: the NATS connection, once the service has connected."""
        self._connection, self._timeout_s, self._ttl_s = connection, timeout_s, ttl_s
        self._cached: tuple[float, Catalog] | None = None

    async def get(self) -> Catalog:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self._ttl_s:
            return self._cached[1]
        try:
            reply = await self._connection().request(CATALOG_SUBJECT, b"", timeout=self._timeout_s)
            catalog = Catalog.model_validate_json(reply.data)
        except nats.errors.NoRespondersError:
            return self._stale_or(Unavailable("the planner is not running, so the models and styles cannot be "
                                              "listed; try again in a moment", code="planner_unavailable"))
        except nats.errors.TimeoutError:
            return self._stale_or(UpstreamTimeout(f"the planner did not answer within {self._timeout_s:g}s; "
                                                  "try again", code="planner_timeout"))
        except ValidationError:
            return self._stale_or(Unavailable("the planner answered a catalog the gateway cannot read",
                                              code="planner_unavailable"))
        self._cached = (now, catalog)
        return catalog

    def _stale_or(self, error: Exception) -> Catalog:
        # An older catalog beats an error: models and styles change only with a planner deploy.
        if self._cached is not None:
            return self._cached[1]
        raise error
