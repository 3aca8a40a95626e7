"""Answers `likeness.rpc.delivery.manage` (queue group `delivery`, so replicas share the requests).

    request  contracts.delivery_rpc.DeliveryRpc    {"user_id", "request_id", "operation": {"op": ..., ...}}
    reply    contracts.delivery_rpc.DeliveryReply  {"status", "body" | "code" + "detail"}

Every request gets a reply, each in its own task (a Telegram check takes seconds and must not hold the
others up); nothing a request carries can stop the subscription.
"""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from contracts.delivery_rpc import DELIVERY_RPC_SUBJECT, DeliveryReply, DeliveryRpc
from services.delivery.management import Management
from services.runtime.faults import is_infrastructure_failure

__all__ = ["DELIVERY_RPC_SUBJECT", "QUEUE", "answer", "serve"]

log = logging.getLogger(__name__)

QUEUE = "delivery"


async def answer(body: bytes, management: Management) -> DeliveryReply:
    """The reply to one request body; never raises."""
    try:
        rpc = DeliveryRpc.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "body"
        return DeliveryReply(status=400, code="bad_request", detail=f"{where}: {first['msg']}")
    try:
        return await management.handle(rpc)
    except Exception as exc:  # noqa: BLE001 - a reply that says what broke beats a caller left to time out
        if is_infrastructure_failure(exc):
            return DeliveryReply(status=503, code="unavailable",
                                 detail="the delivery service cannot reach the database or the bus; try again soon")
        log.exception("delivery request %s failed", rpc.operation.op)
        return DeliveryReply(status=500, code="internal", detail="the delivery service failed; the error is logged")


async def serve(nc: nats.NATS, management: Management) -> Subscription:
    tasks: set[asyncio.Task] = set()

    async def reply(msg: Msg) -> None:
        answered = await answer(msg.data, management)
        if not msg.reply:
            return
        try:
            await msg.respond(answered.model_dump_json().encode())
        except Exception as exc:  # noqa: BLE001 - the asker left or the connection dropped; the next one is fine
            log.warning("delivery reply not sent: %s", exc)

    async def on_request(msg: Msg) -> None:
        task = asyncio.ensure_future(reply(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return await nc.subscribe(DELIVERY_RPC_SUBJECT, queue=QUEUE, cb=on_request)
