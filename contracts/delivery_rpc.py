"""Request/reply between the gateway and the delivery service: a user's destinations and delivery log.

The gateway authenticates the caller and asks on core NATS `likeness.rpc.delivery.manage` (queue group
`delivery`); the delivery service decides, appends to its streams and replies. A reply is the HTTP answer
the gateway gives: `status`, and either `body` or an error `code` with a `detail` that says what to fix.
Request/reply rather than a command and an answering event because two answers must never be stored:
a new webhook secret (shown to its owner once) and a refusal that changed nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.delivery import DeliveryChannel, Destination, SubscribableEvent
from contracts.fields import UserId
from contracts.subjects import rpc_subject

__all__ = [
    "DELIVERY_RPC_SUBJECT",
    "AttemptView",
    "CreateWebhook",
    "DeleteWebhook",
    "DeliveryOp",
    "DeliveryPage",
    "DeliveryReply",
    "DeliveryRpc",
    "DeliveryView",
    "DestinationsView",
    "GoogleChatView",
    "LinkTelegram",
    "NewWebhookSecret",
    "ReadDelivery",
    "ReadDestinations",
    "ReadLog",
    "ReplayDelivery",
    "ReplayEvent",
    "RotateWebhookSecret",
    "SendNow",
    "SetGoogleChat",
    "SubscribeWebhook",
    "TelegramView",
    "UnlinkTelegram",
    "UnsetGoogleChat",
    "WebhookView",
]

DELIVERY_RPC_SUBJECT = rpc_subject("delivery.manage")


class _Op(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReadDestinations(_Op):
    op: Literal["destinations"] = "destinations"


class LinkTelegram(_Op):
    op: Literal["link_telegram"] = "link_telegram"
    chat_id: str = Field(min_length=1, max_length=40)


class UnlinkTelegram(_Op):
    op: Literal["unlink_telegram"] = "unlink_telegram"


class SetGoogleChat(_Op):
    op: Literal["set_google_chat"] = "set_google_chat"
    url: str = Field(min_length=1, max_length=2048)


class UnsetGoogleChat(_Op):
    op: Literal["unset_google_chat"] = "unset_google_chat"


class CreateWebhook(_Op):
    op: Literal["create_webhook"] = "create_webhook"
    url: str = Field(min_length=1, max_length=2048)
    events: tuple[SubscribableEvent, ...] = Field(default=("completed", "failed"), min_length=1)
    description: str = Field(default="", max_length=200)


class SubscribeWebhook(_Op):
    op: Literal["subscribe_webhook"] = "subscribe_webhook"
    endpoint_id: UUID
    events: tuple[SubscribableEvent, ...] = Field(min_length=1)


class DeleteWebhook(_Op):
    op: Literal["delete_webhook"] = "delete_webhook"
    endpoint_id: UUID


class RotateWebhookSecret(_Op):
    op: Literal["rotate_secret"] = "rotate_secret"
    endpoint_id: UUID


class ReadLog(_Op):
    op: Literal["read_log"] = "read_log"
    limit: int = Field(default=50, ge=1, le=200)
    # The cursor of the older page (`DeliveryPage.before`).
    before: int | None = Field(default=None, ge=1)
    chain_id: UUID | None = None


class ReadDelivery(_Op):
    op: Literal["read_delivery"] = "read_delivery"
    delivery_id: UUID


class ReplayDelivery(_Op):
    op: Literal["replay_delivery"] = "replay_delivery"
    delivery_id: UUID


class ReplayEvent(_Op):
    """Deliver a past chain event again: to one webhook endpoint, or to every destination that wants it."""

    op: Literal["replay_event"] = "replay_event"
    event_id: UUID
    endpoint_id: UUID | None = None


class SendNow(_Op):
    """Send a finished chain's picture (or its failure) to the user's Telegram chat now."""

    op: Literal["send_now"] = "send_now"
    chain_id: UUID
    channel: Literal["telegram"] = "telegram"


DeliveryOp = Annotated[
    ReadDestinations | LinkTelegram | UnlinkTelegram | SetGoogleChat | UnsetGoogleChat | CreateWebhook
    | SubscribeWebhook | DeleteWebhook | RotateWebhookSecret | ReadLog | ReadDelivery | ReplayDelivery
    | ReplayEvent | SendNow,
    Field(discriminator="op"),
]


class DeliveryRpc(BaseModel):
    """One request: who asks (authenticated by the gateway), a request id, and the operation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: UserId
    # New ids (an endpoint, a replay's delivery) derive from it, so a retried request makes nothing twice.
    request_id: UUID
    operation: DeliveryOp


class DeliveryReply(BaseModel):
    """The answer, as the gateway gives it over HTTP: a status and a body, or an error code and detail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: int = Field(ge=200, le=599)
    body: Any = None
    code: str | None = None
    detail: str | None = None


class TelegramView(BaseModel):
    chat_id: str


class GoogleChatView(BaseModel):
    url: str = Field(description="the webhook's address without its query (which holds the space's key)")


class WebhookView(BaseModel):
    endpoint_id: UUID
    url: str
    events: tuple[SubscribableEvent, ...]
    description: str
    secret_generation: int = Field(description="rises by one with each rotation; the secret itself is never shown "
                                               "again after it is made")


class NewWebhookSecret(WebhookView):
    secret: str = Field(description="shown this once: `whsec_` + base64, the Standard Webhooks secret format")


class DestinationsView(BaseModel):
    telegram: TelegramView | None
    google_chat: GoogleChatView | None
    webhooks: list[WebhookView]


class AttemptView(BaseModel):
    attempt: int
    at: datetime
    worker: str
    outcome: Literal["delivered", "retry", "rejected"]
    status_code: int | None
    error: str | None
    duration_ms: float
    retry_at: datetime | None


class DeliveryView(BaseModel):
    delivery_id: UUID
    status: Literal["pending", "delivered", "failed"]
    channel: DeliveryChannel
    destination: Destination
    event_id: UUID
    event_type: str
    chain_id: UUID
    message_id: str
    trigger: Literal["automatic", "replay", "send_now"]
    replay_of: UUID | None
    requested_at: datetime
    attempts: list[AttemptView]
    failure: str | None = Field(description="why it failed, once it has")


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryView] = Field(description="newest first")
    before: int | None = Field(description="the cursor of the older page (null on the last page)")
