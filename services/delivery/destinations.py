"""A user's destinations, folded from their `delivery-user-*` stream, and the pure decisions that change them.

No I/O, no clock: checks that need the network (a URL's addresses, a Telegram chat) happen before
`decide` is called, and their verdict is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from uuid import UUID

from contracts import (
    DELIVERABLE_EVENTS,
    Destination,
    Event,
    GoogleChatLinked,
    GoogleChatUnlinked,
    Message,
    TelegramLinked,
    TelegramUnlinked,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookEndpointSubscribed,
    WebhookSecretRotated,
)
from contracts.delivery_rpc import DestinationsView, GoogleChatView, TelegramView, WebhookView

__all__ = [
    "CHAT_ID",
    "Destinations",
    "Refused",
    "Webhook",
    "evolve",
    "redacted",
    "wanted",
    "webhook_view",
]

CHAT_ID = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$")
# Telegram and Google Chat are for people: they get a chain's end, never each accepted step.
_FOR_PEOPLE = frozenset({DELIVERABLE_EVENTS["completed"], DELIVERABLE_EVENTS["failed"]})
_MAX_WEBHOOKS = 10


class Refused(Exception):
    """A request about destinations that changes nothing: the HTTP status, a code and what to do."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class Webhook:
    endpoint_id: UUID
    url: str
    events: tuple[str, ...]
    description: str
    generation: int = 1


@dataclass(frozen=True)
class Destinations:
    """Where the user's deliveries go, as of `version` of their stream."""

    version: int = 0
    telegram_chat_id: str | None = None
    google_chat_url: str | None = None
    webhooks: Mapping[UUID, Webhook] = field(default_factory=lambda: MappingProxyType({}))

    def webhook(self, endpoint_id: UUID) -> Webhook:
        found = self.webhooks.get(endpoint_id)
        if found is None:
            raise Refused(404, "webhook_not_found", f"you have no webhook endpoint {endpoint_id}; GET /delivery/webhooks "
                                                    "lists yours")
        return found

    def view(self) -> DestinationsView:
        return DestinationsView(
            telegram=TelegramView(chat_id=self.telegram_chat_id) if self.telegram_chat_id else None,
            google_chat=GoogleChatView(url=redacted(self.google_chat_url)) if self.google_chat_url else None,
            webhooks=[webhook_view(w) for w in self.webhooks.values()])

    # Decisions: each returns the events to append, or raises Refused.

    def create_webhook(self, user_id: str, endpoint_id: UUID, url: str, events: tuple[str, ...],
                       description: str) -> list[Event]:
        if endpoint_id in self.webhooks:
            return []  # the same request again: it was made already
        if len(self.webhooks) >= _MAX_WEBHOOKS:
            raise Refused(409, "too_many_webhooks", f"you have {_MAX_WEBHOOKS} webhook endpoints, the most one may "
                                                    "have: delete one first")
        return [WebhookEndpointCreated(user_id=user_id, endpoint_id=endpoint_id, url=url, events=_unique(events),
                                       description=description)]

    def subscribe(self, user_id: str, endpoint_id: UUID, events: tuple[str, ...]) -> list[Event]:
        if self.webhook(endpoint_id).events == _unique(events):
            return []
        return [WebhookEndpointSubscribed(user_id=user_id, endpoint_id=endpoint_id, events=_unique(events))]

    def rotate(self, user_id: str, endpoint_id: UUID) -> list[Event]:
        generation = self.webhook(endpoint_id).generation + 1
        return [WebhookSecretRotated(user_id=user_id, endpoint_id=endpoint_id, secret_generation=generation)]

    def delete_webhook(self, user_id: str, endpoint_id: UUID) -> list[Event]:
        self.webhook(endpoint_id)
        return [WebhookEndpointDeleted(user_id=user_id, endpoint_id=endpoint_id)]

    def link_telegram(self, user_id: str, chat_id: str) -> list[Event]:
        return [] if self.telegram_chat_id == chat_id else [TelegramLinked(user_id=user_id, chat_id=chat_id)]

    def unlink_telegram(self, user_id: str) -> list[Event]:
        return [TelegramUnlinked(user_id=user_id)] if self.telegram_chat_id else []

    def set_google_chat(self, user_id: str, url: str) -> list[Event]:
        return [] if self.google_chat_url == url else [GoogleChatLinked(user_id=user_id, url=url)]

    def unset_google_chat(self, user_id: str) -> list[Event]:
        return [GoogleChatUnlinked(user_id=user_id)] if self.google_chat_url else []


def evolve(state: Destinations, message: Message, seq: int | None) -> Destinations:
    version = state.version + 1 if seq is None else seq
    hooks = dict(state.webhooks)
    match message:
        case TelegramLinked(chat_id=chat_id):
            state = replace(state, telegram_chat_id=chat_id)
        case TelegramUnlinked():
            state = replace(state, telegram_chat_id=None)
        case GoogleChatLinked(url=url):
            state = replace(state, google_chat_url=url)
        case GoogleChatUnlinked():
            state = replace(state, google_chat_url=None)
        case WebhookEndpointCreated():
            hooks[message.endpoint_id] = Webhook(message.endpoint_id, message.url, message.events, message.description)
        case WebhookEndpointSubscribed() if message.endpoint_id in hooks:
            hooks[message.endpoint_id] = replace(hooks[message.endpoint_id], events=message.events)
        case WebhookSecretRotated() if message.endpoint_id in hooks:
            hooks[message.endpoint_id] = replace(hooks[message.endpoint_id], generation=message.secret_generation)
        case WebhookEndpointDeleted():
            hooks.pop(message.endpoint_id, None)
    return replace(state, version=version, webhooks=MappingProxyType(hooks))


def wanted(state: Destinations, event_type: str) -> list[Destination]:
    """The destinations that want a chain event of this type, in a stable order."""
    found: list[Destination] = []
    if event_type in _FOR_PEOPLE:
        if state.telegram_chat_id:
            found.append(Destination(channel="telegram"))
        if state.google_chat_url:
            found.append(Destination(channel="google_chat"))
    for hook in state.webhooks.values():
        if event_type in {DELIVERABLE_EVENTS[name] for name in hook.events}:
            found.append(Destination(channel="webhook", endpoint_id=hook.endpoint_id))
    return found


def webhook_view(hook: Webhook) -> WebhookView:
    return WebhookView(endpoint_id=hook.endpoint_id, url=hook.url, events=hook.events, description=hook.description,
                       secret_generation=hook.generation)


def redacted(url: str) -> str:
    """A Google Chat webhook URL without its query, where the space's key and token are."""
    return url.split("?", 1)[0]


def _unique(events: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in DELIVERABLE_EVENTS if name in events)
