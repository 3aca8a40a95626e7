"""The delivery service process: consumes chain events and its own attempts (`handlers`), answers the
gateway's management requests (`rpc`). HTTP clients are made here and closed at shutdown; nothing is
connected at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from services.delivery import rpc
from services.delivery.application import Deliveries
from services.delivery.handlers import attempt_consumer, chain_consumer
from services.delivery.log_reader import LogReader
from services.delivery.management import Management
from services.delivery.senders import HttpSender, TelegramSender
from services.delivery.settings import DeliverySettings
from services.runtime.blobs import BlobStore
from services.runtime.runner import Runtime

__all__ = ["build_runtime"]

log = logging.getLogger(__name__)


def build_runtime(settings: DeliverySettings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                  worker: str | None = None) -> Runtime:
    """The delivery process: the log (it writes the delivery streams, through its own outbox relay too), the
    blob store (Telegram gets the photo's bytes), NATS."""
    rt = Runtime(settings, database=True, relay=True, blobs=True)
    assert rt.store is not None and rt.engine is not None
    http, telegram = HttpSender(settings), TelegramSender(settings)

    def blobs() -> BlobStore:
        assert rt.blobs is not None, "the blob store opens before any message is handled"
        return rt.blobs

    deliveries = Deliveries(settings, rt.store, blobs, http, telegram, clock, worker)
    management = Management(deliveries, LogReader(rt.engine, rt.store))

    @rt.on_startup
    async def serve_management(runtime: Runtime) -> None:
        await rpc.serve(runtime.bus.nc, management)
        log.info("delivery worker %s; Telegram %s; answering %s (queue group %s)", deliveries.worker,
                 "configured" if telegram.configured else "not configured (no bot token)", rpc.DELIVERY_RPC_SUBJECT,
                 rpc.QUEUE)

    @rt.on_shutdown
    async def close_clients(_: Runtime) -> None:
        await http.close()
        await telegram.close()

    rt.bus.consume(chain_consumer(deliveries, ack_wait_s=settings.ack_wait_s))
    rt.bus.consume(attempt_consumer(deliveries, workers=settings.delivery_workers, ack_wait_s=settings.ack_wait_s))
    return rt
