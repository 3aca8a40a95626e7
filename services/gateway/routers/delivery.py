"""Delivery: where your finished pictures go (a Telegram chat, a Google Chat webhook, signed webhooks),
the log of every attempt, replays, and sending a finished job to Telegram now.

The delivery service owns all of it; each route checks the caller, forwards one request over
`likeness.rpc.delivery.manage` and answers what the service replies. The signed image links the
service puts in Google Chat cards and webhook bodies are served here, to anyone holding one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any
from uuid import UUID

import nats.errors
from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, Field

from contracts.delivery import SubscribableEvent
from contracts.delivery_rpc import (
    DELIVERY_RPC_SUBJECT,
    CreateWebhook,
    DeleteWebhook,
    DeliveryOp,
    DeliveryPage,
    DeliveryReply,
    DeliveryRpc,
    DeliveryView,
    DestinationsView,
    GoogleChatView,
    LinkTelegram,
    NewWebhookSecret,
    ReadDelivery,
    ReadDestinations,
    ReadLog,
    ReplayDelivery,
    ReplayEvent,
    RotateWebhookSecret,
    SendNow,
    SetGoogleChat,
    SubscribeWebhook,
    TelegramView,
    UnlinkTelegram,
    UnsetGoogleChat,
    WebhookView,
)
from services.gateway.auth import User
from services.gateway.context import Gateway
from services.gateway.deps import GatewayDep, UserDep
from services.gateway.errors import Forbidden, GatewayError, NotFound, Unavailable, UpstreamTimeout
from services.gateway.images import sniff_media_type
from services.runtime.links import IMAGE_LINK_PATH, verify_image_link

__all__ = ["router"]

router = APIRouter(tags=["delivery"])

IdempotencyKey = Annotated[str | None, Header(
    max_length=200, description="the same key again within a user makes nothing new (a retried request)")]


class TelegramLink(BaseModel):
    chat_id: str = Field(min_length=1, max_length=40, description="the chat's numeric id (negative for a group) "
                                                                  "or an @channel name; the bot must be in it")


class GoogleChatLink(BaseModel):
    url: str = Field(min_length=1, max_length=2048, description="the space's incoming webhook URL")


class NewWebhook(BaseModel):
    url: str = Field(min_length=1, max_length=2048, description="http(s), on a public address")
    events: list[SubscribableEvent] = Field(default=["completed", "failed"], min_length=1)
    description: str = Field(default="", max_length=200)


class WebhookEvents(BaseModel):
    events: list[SubscribableEvent] = Field(min_length=1)


class EventReplay(BaseModel):
    event_id: UUID = Field(description="a chain.completed, chain.failed or chain.step_accepted event (a webhook "
                                       "body's data.event_id)")
    endpoint_id: UUID | None = Field(default=None, description="only to this webhook endpoint; default: every "
                                                               "destination that takes the event")


class _Refused(GatewayError):
    """The delivery service's answer, when it is an error: its status, code and detail as they are."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail, code=code)
        self.status = status


async def _ask(gateway: Gateway, user: User, op: DeliveryOp, idempotency_key: str | None = None) -> Any:
    """Forward one operation as `user`; the reply's body, or its error raised as the gateway's."""
    if user.anonymous and await gateway.accounts.kind_of(user.id) != "registered":
        raise Forbidden("delivery is for registered users: POST /auth/signup (a browser keeps its pictures), then "
                        "set where your pictures go", code="login_required")
    request_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{user.id}:{idempotency_key}") if idempotency_key else uuid.uuid4()
    rpc = DeliveryRpc(user_id=user.id, request_id=request_id, operation=op)
    timeout = gateway.settings.gateway_command_timeout_s
    try:
        message = await gateway.runtime.bus.nc.request(DELIVERY_RPC_SUBJECT, rpc.model_dump_json().encode(),
                                                        timeout=timeout)
    except nats.errors.NoRespondersError:
        raise Unavailable("the delivery service is not running; start it (python -m services.delivery) or try again "
                          "in a moment", code="delivery_unavailable", headers={"Retry-After": "5"}) from None
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        raise UpstreamTimeout(f"the delivery service did not answer within {timeout:g}s; try again",
                              code="delivery_timeout") from None
    reply = DeliveryReply.model_validate_json(message.data)
    if reply.status >= 400:
        raise _Refused(reply.status, reply.code or "delivery_refused", reply.detail or "refused")
    return reply.body


@router.get("/delivery", response_model=DestinationsView, summary="Where your pictures go: Telegram, Google Chat, "
                                                                  "webhooks")
async def destinations(user: UserDep, gateway: GatewayDep) -> Any:
    return await _ask(gateway, user, ReadDestinations())


@router.put("/delivery/telegram", response_model=TelegramView,
            summary="Send finished pictures to this Telegram chat (the bot writes a first message to check it)")
async def link_telegram(body: TelegramLink, user: UserDep, gateway: GatewayDep) -> Any:
    return await _ask(gateway, user, LinkTelegram(chat_id=body.chat_id))


@router.delete("/delivery/telegram", status_code=204, response_class=Response, summary="Stop sending to Telegram")
async def unlink_telegram(user: UserDep, gateway: GatewayDep) -> Response:
    await _ask(gateway, user, UnlinkTelegram())
    return Response(status_code=204)


@router.put("/delivery/google-chat", response_model=GoogleChatView,
            summary="Send finished pictures to a Google Chat space's incoming webhook")
async def set_google_chat(body: GoogleChatLink, user: UserDep, gateway: GatewayDep) -> Any:
    return await _ask(gateway, user, SetGoogleChat(url=body.url))


@router.delete("/delivery/google-chat", status_code=204, response_class=Response,
               summary="Stop sending to Google Chat")
async def unset_google_chat(user: UserDep, gateway: GatewayDep) -> Response:
    await _ask(gateway, user, UnsetGoogleChat())
    return Response(status_code=204)


@router.get("/delivery/webhooks", response_model=list[WebhookView], summary="Your signed webhook endpoints")
async def list_webhooks(user: UserDep, gateway: GatewayDep) -> Any:
    return (await _ask(gateway, user, ReadDestinations()))["webhooks"]


@router.post("/delivery/webhooks", response_model=NewWebhookSecret, status_code=201,
             summary="A signed webhook endpoint; its secret is shown once")
async def create_webhook(body: NewWebhook, user: UserDep, gateway: GatewayDep,
                         idempotency_key: IdempotencyKey = None) -> Any:
    op = CreateWebhook(url=body.url, events=tuple(body.events), description=body.description)
    return await _ask(gateway, user, op, idempotency_key)


@router.patch("/delivery/webhooks/{endpoint_id}", response_model=WebhookView,
              summary="Choose the events an endpoint receives (completed, failed, step_accepted)")
async def subscribe_webhook(endpoint_id: UUID, body: WebhookEvents, user: UserDep, gateway: GatewayDep) -> Any:
    return await _ask(gateway, user, SubscribeWebhook(endpoint_id=endpoint_id, events=tuple(body.events)))


@router.delete("/delivery/webhooks/{endpoint_id}", status_code=204, response_class=Response,
               summary="Delete an endpoint; its pending deliveries end unsent")
async def delete_webhook(endpoint_id: UUID, user: UserDep, gateway: GatewayDep) -> Response:
    await _ask(gateway, user, DeleteWebhook(endpoint_id=endpoint_id))
    return Response(status_code=204)


@router.post("/delivery/webhooks/{endpoint_id}/rotate-secret", response_model=NewWebhookSecret,
             summary="A new secret (shown once); from now on deliveries are signed with it alone")
async def rotate_secret(endpoint_id: UUID, user: UserDep, gateway: GatewayDep,
                        idempotency_key: IdempotencyKey = None) -> Any:
    return await _ask(gateway, user, RotateWebhookSecret(endpoint_id=endpoint_id), idempotency_key)


@router.get("/delivery/log", response_model=DeliveryPage,
            summary="Your deliveries, newest first, each with every attempt and its outcome")
async def delivery_log(user: UserDep, gateway: GatewayDep,
                       limit: int = Query(default=50, ge=1, le=200),
                       before: int | None = Query(default=None, ge=1, description="the `before` of the previous page"),
                       chain_id: UUID | None = Query(default=None, description="only this job's deliveries")) -> Any:
    return await _ask(gateway, user, ReadLog(limit=limit, before=before, chain_id=chain_id))


@router.get("/delivery/log/{delivery_id}", response_model=DeliveryView, summary="One delivery and its attempts")
async def delivery(delivery_id: UUID, user: UserDep, gateway: GatewayDep) -> Any:
    return await _ask(gateway, user, ReadDelivery(delivery_id=delivery_id))


@router.post("/delivery/log/{delivery_id}/replay", response_model=list[DeliveryView], status_code=202,
             summary="Deliver it again, as a new delivery (same webhook-id, fresh signature and attempts)")
async def replay_delivery(delivery_id: UUID, user: UserDep, gateway: GatewayDep,
                          idempotency_key: IdempotencyKey = None) -> Any:
    return await _ask(gateway, user, ReplayDelivery(delivery_id=delivery_id), idempotency_key)


@router.post("/delivery/replay", response_model=list[DeliveryView], status_code=202,
             summary="Deliver a past chain event again to your destinations (or one webhook endpoint)")
async def replay_event(body: EventReplay, user: UserDep, gateway: GatewayDep,
                       idempotency_key: IdempotencyKey = None) -> Any:
    return await _ask(gateway, user, ReplayEvent(event_id=body.event_id, endpoint_id=body.endpoint_id),
                      idempotency_key)


@router.post("/chat/job/{job_id}/send-telegram", response_model=DeliveryView, status_code=202,
             summary="Send a finished job's picture (or why it failed) to your Telegram chat now")
async def send_telegram(job_id: UUID, user: UserDep, gateway: GatewayDep,
                        idempotency_key: IdempotencyKey = None) -> Any:
    await gateway.chains.check_owner(job_id, user)
    return await _ask(gateway, user, SendNow(chain_id=job_id), idempotency_key)


@router.get(f"{IMAGE_LINK_PATH}/{{sha256}}", summary="An image behind a signed link (from a delivery); no login",
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}})
async def linked_image(sha256: str, gateway: GatewayDep, expires: int = Query(ge=0),
                       signature: str = Query(min_length=1, max_length=128)) -> Response:
    secret = gateway.settings.link_secret
    if secret is None:
        raise NotFound("image links are off: the operator sets LIKENESS_IMAGE_LINK_SECRET", code="links_disabled")
    why = verify_image_link(secret, sha256, expires, signature, time.time())
    if why is not None:
        raise Forbidden(why, code="bad_image_link")
    data = await gateway.blobs.get(sha256)
    # Shared caches may keep it until the link expires: the bytes behind a sha256 never change.
    max_age = max(0, min(expires - int(time.time()), 86400))
    return Response(data, media_type=sniff_media_type(data) or "application/octet-stream",
                    headers={"Cache-Control": f"public, max-age={max_age}", "ETag": f'"{sha256}"'})
