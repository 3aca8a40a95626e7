"""The delivery family: where a user's pictures go when a chain ends, and every try to get them there.

The delivery service is the single writer of two kinds of stream (names in contracts.streams):

    delivery-user-<sha256(user)[:32]>   the user's destinations: a Telegram chat, a Google Chat incoming
                                        webhook, signed webhook endpoints and their subscriptions
    delivery-<delivery id>              one chain event delivered to one destination: requested, each
                                        claim, each attempt with its outcome, and how it ended

A claim (`DeliveryClaimed`) is appended at the delivery stream's version, so two replicas can never
both hold the same attempt; one that dies holding it is taken over once its lease has passed.
No secret is recorded here: webhook signing secrets derive from the service's key and the
endpoint's `secret_generation`, and the Telegram bot token lives in the service's settings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.base import Command, Event
from contracts.fields import Reason, UserId

__all__ = [
    "DELIVERABLE_EVENTS",
    "Deliver",
    "DeliveryAttempted",
    "DeliveryChannel",
    "DeliveryClaimed",
    "DeliveryFailed",
    "DeliveryRequested",
    "DeliverySucceeded",
    "Destination",
    "GoogleChatLinked",
    "GoogleChatUnlinked",
    "SubscribableEvent",
    "TelegramLinked",
    "TelegramUnlinked",
    "WebhookEndpointCreated",
    "WebhookEndpointDeleted",
    "WebhookEndpointSubscribed",
    "WebhookSecretRotated",
]

DeliveryChannel = Literal["telegram", "google_chat", "webhook"]
# What an endpoint subscribes to, by the short names the API uses.
SubscribableEvent = Literal["completed", "failed", "step_accepted"]
# The chain event type behind each subscribable name.
DELIVERABLE_EVENTS: dict[str, str] = {
    "completed": "chain.completed",
    "failed": "chain.failed",
    "step_accepted": "chain.step_accepted",
}
_Subscriptions = tuple[SubscribableEvent, ...]


class Destination(BaseModel):
    """Where one delivery goes: the user's Telegram chat, Google Chat webhook, or one webhook endpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: DeliveryChannel
    endpoint_id: UUID | None = None

    @model_validator(mode="after")
    def _endpoint_for_webhooks_only(self) -> Destination:
        if (self.channel == "webhook") != (self.endpoint_id is not None):
            raise ValueError("a webhook destination names its endpoint_id; the other channels have none")
        return self

    @property
    def key(self) -> str:
        """`telegram`, `google_chat` or `webhook:<endpoint id>`: with the event id, a delivery's idempotency key."""
        return f"webhook:{self.endpoint_id}" if self.endpoint_id else self.channel


class TelegramLinked(Event):
    """The user's pictures go to this Telegram chat (the bot must be able to write there)."""

    type: Literal["delivery.telegram_linked"] = "delivery.telegram_linked"
    version: Literal[1] = 1

    user_id: UserId
    # A numeric chat id (negative for groups) or an @channel name, as the Bot API takes it.
    chat_id: str = Field(pattern=r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$")


class TelegramUnlinked(Event):
    type: Literal["delivery.telegram_unlinked"] = "delivery.telegram_unlinked"
    version: Literal[1] = 1

    user_id: UserId


class GoogleChatLinked(Event):
    """The user's pictures go to this Google Chat incoming webhook (its URL carries the space's key)."""

    type: Literal["delivery.google_chat_linked"] = "delivery.google_chat_linked"
    version: Literal[1] = 1

    user_id: UserId
    url: str = Field(min_length=8, max_length=2048)


class GoogleChatUnlinked(Event):
    type: Literal["delivery.google_chat_unlinked"] = "delivery.google_chat_unlinked"
    version: Literal[1] = 1

    user_id: UserId


class WebhookEndpointCreated(Event):
    """A signed webhook endpoint of the user's, with the chain events it wants (secret generation 1)."""

    type: Literal["delivery.webhook_created"] = "delivery.webhook_created"
    version: Literal[1] = 1

    user_id: UserId
    endpoint_id: UUID
    url: str = Field(min_length=8, max_length=2048)
    events: _Subscriptions = Field(min_length=1)
    description: str = Field(default="", max_length=200)


class WebhookEndpointSubscribed(Event):
    """The endpoint now wants exactly these events."""

    type: Literal["delivery.webhook_subscribed"] = "delivery.webhook_subscribed"
    version: Literal[1] = 1

    user_id: UserId
    endpoint_id: UUID
    events: _Subscriptions = Field(min_length=1)


class WebhookSecretRotated(Event):
    """From now on the endpoint's deliveries are signed with the secret of this generation only."""

    type: Literal["delivery.webhook_secret_rotated"] = "delivery.webhook_secret_rotated"
    version: Literal[1] = 1

    user_id: UserId
    endpoint_id: UUID
    secret_generation: int = Field(ge=2)


class WebhookEndpointDeleted(Event):
    type: Literal["delivery.webhook_deleted"] = "delivery.webhook_deleted"
    version: Literal[1] = 1

    user_id: UserId
    endpoint_id: UUID


class DeliveryRequested(Event):
    """A chain event is owed to a destination; the first event of its delivery stream."""

    type: Literal["delivery.requested"] = "delivery.requested"
    version: Literal[1] = 1

    delivery_id: UUID
    user_id: UserId
    destination: Destination
    # The chain event delivered (chain.completed, chain.failed or chain.step_accepted) and its chain.
    event_id: UUID
    event_type: str = Field(pattern=r"^chain\.(completed|failed|step_accepted)$")
    chain_id: UUID
    # The `webhook-id` a receiver de-duplicates on: the same for every attempt and replay of one message.
    message_id: str = Field(min_length=1, max_length=100)
    trigger: Literal["automatic", "replay", "send_now"] = "automatic"
    replay_of: UUID | None = None
    # Retries stop this long after it (the service's retry window).
    requested_at: datetime


class DeliveryClaimed(Event):
    """A replica holds the next attempt until `lease_until`; after that another may take it over."""

    type: Literal["delivery.claimed"] = "delivery.claimed"
    version: Literal[1] = 1

    delivery_id: UUID
    attempt: int = Field(ge=1)
    worker: str = Field(min_length=1, max_length=200)
    lease_until: datetime
    # The worker whose claim on this attempt lapsed (it died or hung mid-send).
    takeover_of: str | None = None


class DeliveryAttempted(Event):
    """One attempt and how the destination answered it."""

    type: Literal["delivery.attempted"] = "delivery.attempted"
    version: Literal[1] = 1

    delivery_id: UUID
    attempt: int = Field(ge=1)
    worker: str = Field(min_length=1, max_length=200)
    # delivered: a 2xx; retry: 5xx, 429, timeout or no connection; rejected: any other answer.
    outcome: Literal["delivered", "retry", "rejected"]
    status_code: int | None = Field(default=None, ge=100, le=599)
    error: str | None = Field(default=None, max_length=1000)
    duration_ms: float = Field(ge=0)
    # When the next attempt is due (None: no further attempt).
    retry_at: datetime | None = None


class DeliverySucceeded(Event):
    type: Literal["delivery.succeeded"] = "delivery.succeeded"
    version: Literal[1] = 1

    delivery_id: UUID
    attempts: int = Field(ge=1)


class DeliveryFailed(Event):
    """The delivery ended without success: refused by the destination, out of time, or the destination is gone."""

    type: Literal["delivery.failed"] = "delivery.failed"
    version: Literal[1] = 1

    delivery_id: UUID
    attempts: int = Field(ge=0)
    reason: Reason
    cause: Literal["rejected", "expired", "destination_gone"]


class Deliver(Command):
    """Make attempt `attempt` of a delivery, not before `not_before` (the back-off of a retry)."""

    type: Literal["delivery.deliver"] = "delivery.deliver"
    version: Literal[1] = 1

    delivery_id: UUID
    attempt: int = Field(ge=1)
    not_before: datetime | None = None

