"""The planner's answer to `likeness.rpc.planner.catalog`: its model and style registries as a Catalog."""

from __future__ import annotations

import logging

import nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.catalog import CATALOG_SUBJECT, Catalog, CatalogModel, CatalogStyle
from services.planner.planning.registry import Registry

__all__ = ["QUEUE", "catalog_of", "serve"]

log = logging.getLogger(__name__)

QUEUE = "planner"


def catalog_of(registry: Registry) -> Catalog:
    return Catalog(
        models=tuple(CatalogModel(name=m.name, kind=m.kind, description=m.description, width=m.width, height=m.height,
                                  steps=m.steps) for m in registry.models.values()),
        styles=tuple(CatalogStyle(name=s.name, model=s.model, description=s.description, lora=s.lora)
                     for s in registry.styles.values()),
        default_style=registry.default_style,
    )


async def serve(nc: nats.NATS, catalog: Catalog) -> Subscription:
    """Answer catalog requests until the subscription is drained; replicas share them (a queue group)."""
    reply = catalog.model_dump_json().encode()

    async def answer(msg: Msg) -> None:
        if msg.reply:
            await msg.respond(reply)

    log.info("answering %s (queue group %s)", CATALOG_SUBJECT, QUEUE)
    return await nc.subscribe(CATALOG_SUBJECT, queue=QUEUE, cb=answer)
