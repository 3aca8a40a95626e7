"""The management requests the gateway forwards: a user's destinations, their delivery log, replays, sends.

Each operation answers a `DeliveryReply` (the HTTP answer the gateway gives). URLs are checked here
(syntax, then every address the host resolves to) and a Telegram chat is checked by sending it a
first message, so a destination that cannot work is refused when it is set, not a day later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from uuid import UUID

from pydantic import BaseModel

from contracts import CHAIN_ENDS, DELIVERABLE_EVENTS, ChainRequested, Destination, Event
from contracts.decision import Decision
from contracts.delivery_rpc import (
    CreateWebhook,
    DeleteWebhook,
    DeliveryOp,
    DeliveryPage,
    DeliveryReply,
    DeliveryRpc,
    DeliveryView,
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
    UnlinkTelegram,
    UnsetGoogleChat,
)
from contracts.streams import chain_stream, delivery_stream, delivery_user_stream
from services.delivery import attempts
from services.delivery.application import ChainUnknown, Deliveries, Owed
from services.delivery.destinations import CHAT_ID, Destinations, Refused, wanted, webhook_view
from services.delivery.log_reader import LogReader
from services.delivery.signing import endpoint_secret
from services.delivery.urls import UrlRefused, vet
from services.runtime.ids import derived_id
from services.runtime.writer import Stamp

__all__ = ["Management"]

log = logging.getLogger(__name__)

_LINKED_TEXT = "Likeness will send your pictures to this chat."
_CHAIN_EVENTS = frozenset(DELIVERABLE_EVENTS.values())


class Management:
    def __init__(self, deliveries: Deliveries, reader: LogReader) -> None:
        self._d, self._reader = deliveries, reader

    async def handle(self, rpc: DeliveryRpc) -> DeliveryReply:
        try:
            return await self._dispatch(rpc.user_id, rpc.request_id, rpc.operation)
        except Refused as exc:
            return DeliveryReply(status=exc.status, code=exc.code, detail=exc.detail)
        except UrlRefused as exc:
            return DeliveryReply(status=422, code=exc.code, detail=str(exc))

    async def _dispatch(self, user: str, request_id: UUID, op: DeliveryOp) -> DeliveryReply:
        match op:
            case ReadDestinations():
                return _ok((await self._state(user)).view())
            case LinkTelegram():
                return await self._link_telegram(user, request_id, op.chat_id.strip())
            case UnlinkTelegram():
                await self._change(user, request_id, lambda s: s.unlink_telegram(user))
                return DeliveryReply(status=204)
            case SetGoogleChat():
                await self._vet(op.url)
                state = await self._change(user, request_id, lambda s: s.set_google_chat(user, op.url))
                return _ok(state.view().google_chat)
            case UnsetGoogleChat():
                await self._change(user, request_id, lambda s: s.unset_google_chat(user))
                return DeliveryReply(status=204)
            case CreateWebhook():
                await self._vet(op.url)
                endpoint_id = derived_id(request_id, "webhook-endpoint")
                state = await self._change(user, request_id, lambda s: s.create_webhook(
                    user, endpoint_id, op.url, op.events, op.description))
                return self._secret(state, endpoint_id, status=201)
            case SubscribeWebhook():
                state = await self._change(user, request_id, lambda s: s.subscribe(user, op.endpoint_id, op.events))
                return _ok(webhook_view(state.webhook(op.endpoint_id)))
            case RotateWebhookSecret():
                state = await self._change(user, request_id, lambda s: s.rotate(user, op.endpoint_id))
                return self._secret(state, op.endpoint_id, status=200)
            case DeleteWebhook():
                await self._change(user, request_id, lambda s: s.delete_webhook(user, op.endpoint_id))
                return DeliveryReply(status=204)
            case ReadLog():
                views, before = await self._reader.deliveries(user, limit=op.limit, before=op.before,
                                                              chain_id=op.chain_id)
                return _ok(DeliveryPage(deliveries=views, before=before))
            case ReadDelivery():
                return _ok(await self._owned_delivery(user, op.delivery_id))
            case ReplayDelivery():
                return await self._replay_delivery(user, request_id, op.delivery_id)
            case ReplayEvent():
                return await self._replay_event(user, request_id, op.event_id, op.endpoint_id)
            case SendNow():
                return await self._send_now(user, request_id, op.chain_id)
        raise Refused(400, "unknown_operation", f"no operation {op!r}")

    # Destinations.

    async def _state(self, user: str) -> Destinations:
        return await self._d.users.load(delivery_user_stream(user))

    async def _change(self, user: str, request_id: UUID,
                      decide: Callable[[Destinations], list[Event]]) -> Destinations:
        stamp = Stamp(lambda version, what: derived_id(request_id, f"{version}:{what}"), self._d.clock(),
                      delivery_user_stream(user), actor=user)
        written = await self._d.users.write(delivery_user_stream(user), lambda s: Decision(decide(s)), stamp)
        return written.state

    async def _vet(self, url: str) -> None:
        settings = self._d.settings
        await vet(url, allow_private=settings.webhook_allow_private, timeout_s=settings.delivery_dns_timeout_s)

    def _secret(self, state: Destinations, endpoint_id: UUID, *, status: int) -> DeliveryReply:
        hook = state.webhook(endpoint_id)
        secret = endpoint_secret(self._d.settings.delivery_secret_key.get_secret_value(), endpoint_id, hook.generation)
        return DeliveryReply(status=status, body=NewWebhookSecret(**webhook_view(hook).model_dump(),
                                                                  secret=secret).model_dump(mode="json"))

    async def _link_telegram(self, user: str, request_id: UUID, chat_id: str) -> DeliveryReply:
        if not self._d.telegram.configured:
            raise Refused(409, "telegram_not_configured", "this server has no Telegram bot: its operator sets "
                                                          "LIKENESS_DELIVERY_TELEGRAM_BOT_TOKEN")
        if not CHAT_ID.match(chat_id):
            raise Refused(422, "invalid_chat_id", "a Telegram chat id is a number (negative for groups) or an "
                                                  "@channel name; send /start to the bot and use the id it shows")
        if (await self._state(user)).telegram_chat_id != chat_id:
            sent = await self._d.telegram.send_message(chat_id, _LINKED_TEXT)
            if sent.outcome == "rejected":
                raise Refused(422, "telegram_chat_unreachable", f"the bot cannot write to chat {chat_id}: "
                              f"{sent.error}. Start a chat with the bot (or add it to the group) first")
            if sent.outcome == "retry":
                raise Refused(503, "telegram_unavailable", f"Telegram did not take the message ({sent.error}); "
                                                           "try again in a minute")
        state = await self._change(user, request_id, lambda s: s.link_telegram(user, chat_id))
        return _ok(state.view().telegram)

    # The log, replays and sends.

    async def _owned_delivery(self, user: str, delivery_id: UUID) -> DeliveryView:
        view = await self._reader.delivery(delivery_stream(delivery_id))
        state = await self._d.streams.load(delivery_stream(delivery_id))
        if view is None or state.request is None or state.request.user_id != user:
            raise Refused(404, "delivery_not_found", f"you have no delivery {delivery_id}; GET /delivery/log lists "
                                                     "yours")
        return view

    async def _owed(self, owed: list[Owed], status: int = 202) -> DeliveryReply:
        for one in owed:
            await self._d.owe(one)
        views = [await self._reader.delivery(delivery_stream(one.delivery_id)) for one in owed]
        return DeliveryReply(status=status, body=[v.model_dump(mode="json") for v in views if v is not None])

    async def _replay_delivery(self, user: str, request_id: UUID, delivery_id: UUID) -> DeliveryReply:
        original = await self._owned_delivery(user, delivery_id)
        new_id = attempts.replay_id_for(request_id, original.destination)
        return await self._owed([Owed(destination=original.destination, user_id=user, event_id=original.event_id,
                                      event_type=original.event_type, chain_id=original.chain_id,
                                      delivery_id=new_id, message_id=original.message_id, trigger="replay",
                                      replay_of=original.delivery_id)])

    async def _chain_of(self, user: str, chain_id: UUID) -> ChainRequested:
        try:
            owner = await self._d.chain_owner(chain_id)
        except ChainUnknown:
            owner = None
        if owner is None or owner.user_id != user:
            raise Refused(404, "chain_not_found", f"you have no chain {chain_id}")
        return owner

    async def _replay_event(self, user: str, request_id: UUID, event_id: UUID,
                            endpoint_id: UUID | None) -> DeliveryReply:
        found = await self._reader.event(event_id)
        if found is None or found.message.type not in _CHAIN_EVENTS:
            raise Refused(404, "event_not_found", f"no chain.completed, chain.failed or chain.step_accepted event "
                                                  f"{event_id} of yours (a webhook body's data.event_id names one)")
        chain_id: UUID = found.message.chain_id  # type: ignore[attr-defined]
        await self._chain_of(user, chain_id)
        state = await self._state(user)
        if endpoint_id is not None:
            targets = [Destination(channel="webhook", endpoint_id=state.webhook(endpoint_id).endpoint_id)]
        else:
            targets = wanted(state, found.message.type)
        if not targets:
            raise Refused(409, "no_destination", f"none of your destinations takes {found.message.type} events: "
                                                 "link one, or subscribe a webhook to it, then replay")
        return await self._owed([
            Owed(destination=target, user_id=user, event_id=event_id, event_type=found.message.type,
                 chain_id=chain_id, delivery_id=attempts.replay_id_for(request_id, target),
                 message_id=attempts.message_id_for(attempts.delivery_id_for(event_id, target)), trigger="replay")
            for target in targets])

    async def _send_now(self, user: str, request_id: UUID, chain_id: UUID) -> DeliveryReply:
        await self._chain_of(user, chain_id)
        end = await self._chain_end(chain_id)
        if end is None:
            raise Refused(409, "job_not_finished", "the picture is not finished yet: GET /wait/{job_id} waits for "
                                                   "it, then send it")
        if end[1] not in _CHAIN_EVENTS:
            raise Refused(409, "job_has_no_picture", f"the job ended without a picture or a failure to report "
                                                     f"({end[1]}): there is nothing to send")
        if not self._d.telegram.configured:
            raise Refused(409, "telegram_not_configured", "this server has no Telegram bot: its operator sets "
                                                          "LIKENESS_DELIVERY_TELEGRAM_BOT_TOKEN")
        if not (await self._state(user)).telegram_chat_id:
            raise Refused(409, "telegram_not_linked", "link your Telegram chat first: PUT /delivery/telegram "
                                                      '{"chat_id": ...}')
        delivery_id = derived_id(request_id, "send-now")
        reply = await self._owed([Owed(destination=Destination(channel="telegram"), user_id=user,
                                       event_id=end[0], event_type=end[1], chain_id=chain_id, delivery_id=delivery_id,
                                       message_id=attempts.message_id_for(delivery_id), trigger="send_now")])
        return DeliveryReply(status=202, body=reply.body[0] if reply.body else None)

    async def _chain_end(self, chain_id: UUID) -> tuple[UUID, str] | None:
        """(event id, type) of the event that ended the chain; None while it runs."""
        for record in reversed(await self._d.store.read_stream(chain_stream(chain_id))):
            env = record.envelope
            if env.type in CHAIN_ENDS:
                return env.event_id, env.type
        return None


def _ok(body: BaseModel | None) -> DeliveryReply:
    return DeliveryReply(status=200, body=body.model_dump(mode="json") if body is not None else None)

