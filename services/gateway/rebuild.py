"""`python -m services.gateway.rebuild`: empty the gateway's read models and fold the whole log again.

Safe while gateways run: their projectors take turns with this one on the checkpoint row, and the
views are only briefly empty (reads that need fresh rows sync first). Prints how many events it folded.
"""

from __future__ import annotations

import asyncio
import time

from services.gateway.db import Database
from services.gateway.readmodels.projector import Projector
from services.gateway.settings import GatewaySettings
from services.runtime.database import create_engine
from services.runtime.eventstore import EventStore


async def rebuild(settings: GatewaySettings) -> int:
    engine = create_engine(settings)
    try:
        projector = Projector(Database(engine), EventStore(engine), batch=settings.gateway_projector_batch)
        await projector.rebuild()
        folded = 0
        while moved := await projector.run_once():
            folded += moved
        return folded
    finally:
        await engine.dispose()


if __name__ == "__main__":
    started = time.perf_counter()
    count = asyncio.run(rebuild(GatewaySettings(service_name="gateway-rebuild")))
    print(f"read models rebuilt from {count} events in {time.perf_counter() - started:.1f}s")
