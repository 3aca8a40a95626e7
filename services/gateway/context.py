"""Everything a gateway request may use, made once per process and shared: the `Gateway`.

Built from the service's `Runtime` (NATS, Postgres, blob store), started by a runtime start-up
hook: the live hub subscribes and the projector starts. Both stop with the runtime: its spawned
tasks are cancelled before the HTTP server stops, and cancelling the hub's task ends every open
event stream, so no SSE client holds the shutdown up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import UTC, datetime

from services.gateway.accounts import Accounts
from services.gateway.auth import RateLimiter, SessionSigner
from services.gateway.catalog import CatalogClient
from services.gateway.chain_reader import ChainReader
from services.gateway.commands import Commander
from services.gateway.db import Database
from services.gateway.errors import Unavailable
from services.gateway.images import ByteCache
from services.gateway.live import LiveHub
from services.gateway.readmodels.projector import Projector
from services.gateway.settings import GatewaySettings
from services.gateway.sse import StreamHeads
from services.runtime.blobs import BlobStore
from services.runtime.eventstore import EventStore
from services.runtime.runner import Runtime

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


class Gateway:
    """The gateway's shared resources (one per process)."""

    def __init__(self, settings: GatewaySettings, runtime: Runtime) -> None:
        assert runtime.engine is not None and runtime.store is not None, "the gateway needs the database"
        self.settings = settings
        self.runtime = runtime
        self.store: EventStore = runtime.store
        self.db = Database(runtime.engine)
        self.hub = LiveHub(queue_size=settings.gateway_sse_queue_size)
        self.projector = Projector(self.db, self.store, batch=settings.gateway_projector_batch,
                                   poll_s=settings.gateway_projector_poll_s,
                                   debounce_s=settings.gateway_projector_debounce_s)
        self.accounts = Accounts(self.db, anonymous_image_limit=settings.gateway_anonymous_image_limit,
                                 nick_image_limit=settings.gateway_nick_image_limit,
                                 nick_window_s=settings.gateway_nick_image_window_s)
        self.chains = ChainReader(self.store, self.db, self.accounts)
        self.commander = Commander(runtime.bus, self.hub, self.db)
        self.signer = SessionSigner(settings.gateway_session_secret.get_secret_value(),
                                    max_age_s=settings.gateway_session_max_age_s)
        self.limiter = RateLimiter(settings.gateway_rate_per_s, settings.gateway_rate_burst)
        self.nick_limiter = RateLimiter(settings.gateway_nick_rate_per_s, settings.gateway_nick_rate_burst)
        self.catalog = CatalogClient(lambda: runtime.bus.nc, timeout_s=settings.nats_timeout_s)
        self.thumbs = ByteCache(settings.gateway_thumb_cache_bytes)
        self.hashes: OrderedDict[str, str] = OrderedDict()
        # Heartbeats of every stream of one chain share one look at the log per half period.
        self.heads = StreamHeads(self.db, ttl_s=settings.gateway_sse_heartbeat_s / 2)

    @property
    def blobs(self) -> BlobStore:
        if self.runtime.blobs is None:
            raise Unavailable("the blob store is not connected yet; try again in a moment", code="blobs_unavailable")
        return self.runtime.blobs

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    async def start(self, runtime: Runtime) -> None:
        """Runtime start-up hook: subscribe the live hub, start the projector."""
        await self.hub.start(runtime.bus.nc)
        self.hub.observe(lambda _subject: self.projector.poke())
        runtime.spawn(self.projector.run, "gateway-projector")
        runtime.spawn(self._hold_hub, "gateway-live-hub")

    async def _hold_hub(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            # Cancelled at shutdown, before the HTTP server waits for open responses to finish.
            await self.hub.stop()
