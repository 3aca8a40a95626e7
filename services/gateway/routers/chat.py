"""Chat: send a message to a character and get the reply streamed back as Server-Sent Events."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from contracts import SendChatMessage, VoiceInput
from services.gateway.accounts import Submission
from services.gateway.auth import User
from services.gateway.characters import visible_character
from services.gateway.context import Gateway
from services.gateway.deps import GatewayDep, UserDep
from services.gateway.errors import Conflict, NotFound
from services.gateway.readmodels.hidden import conversation_hidden
from services.gateway.schemas import ChatRequest
from services.gateway.sse import SSE_HEADERS, chat_reply_events

__all__ = ["STREAM_DOC", "ChatTarget", "chat_target", "reply_stream", "router"]

router = APIRouter(tags=["chat"])

STREAM_DOC = {
    200: {
        "description": "text/event-stream: `accepted` {conversation_id, message_id}; `delta` {delta, index} while "
                       "the reply is written (`reset` when it starts over); `image` {chain_id, events_url} when the "
                       "message asked for a picture (a follow-up edits the conversation's last picture); `picked` "
                       "{chain_id} when it went back to an earlier picture (null: the reference photo); then `reply` "
                       "{text, offline, chain_id, model, cost_usd, ...} "
                       "or `error` {error, detail}",
        "content": {"text/event-stream": {}},
    }
}


@router.post("/chat/stream", responses=STREAM_DOC, summary="Send a message; the reply streams back (SSE)")
async def chat_stream(body: ChatRequest, user: UserDep, gateway: GatewayDep) -> StreamingResponse:
    target = await chat_target(gateway, user, body.character_id, body.conversation_id)
    return await reply_stream(gateway, user, target, body.text)


@dataclass(frozen=True)
class ChatTarget:
    """Where a message goes: a character the caller may talk to, and a conversation of theirs with it."""

    character_id: str
    conversation_id: uuid.UUID
    stream: str


async def chat_target(gateway: Gateway, user: User, character_id: str,
                      conversation_id: uuid.UUID | None) -> ChatTarget:
    """The character and conversation a message is for; 404/409 when the caller may not send it there."""
    character = await visible_character(gateway.store, character_id, user)
    conversation_id = conversation_id or uuid.uuid4()
    stream = f"conversation-{conversation_id}"
    first = await gateway.db.first_event(stream)
    if first is not None and first[0] == "chat.conversation_started":
        # A conversation its owner deleted is gone to them; the log still holds it.
        if first[1].get("user_id") != user.id or await conversation_hidden(gateway.db, conversation_id):
            raise NotFound(f"no conversation {conversation_id} of yours; omit conversation_id to start one",
                           code="conversation_not_found")
        if first[1].get("character_id") != character.character_id:
            raise Conflict(f"conversation {conversation_id} is with {first[1].get('character_id')!r}; a conversation "
                           "is with one character only: omit conversation_id to start a new one",
                           code="other_character")
    return ChatTarget(character.character_id, conversation_id, stream)


async def reply_stream(gateway: Gateway, user: User, target: ChatTarget, text: str, *,
                       voice: VoiceInput | None = None, opening: bytes = b"") -> StreamingResponse:
    """Send the message and stream the reply (`opening`: SSE frames to send before it, e.g. the transcript)."""
    message_id = uuid.uuid4()
    # Chat decides whether the message asks for a picture; the gateway says whether this user may have one.
    allowed = await gateway.accounts.may_start_picture(user.id, user.kind)
    command = SendChatMessage(conversation_id=target.conversation_id, character_id=target.character_id,
                              user_id=user.id, text=text, message_id=message_id, pictures_allowed=allowed, voice=voice)
    stream = target.stream
    # Listen before sending: the first tokens may come back within milliseconds.
    listener = gateway.hub.subscribe(stream)
    try:
        await gateway.commander.send(gateway.commander.envelope(command, stream=stream, actor=user.id), command)
    except Exception:
        gateway.hub.unsubscribe(listener)
        raise
    settings = gateway.settings

    async def record_chain(chain_id: str, request_text: str) -> None:
        # The planner records the chain a moment later; until then this row says whose it is.
        await gateway.accounts.record_submission(Submission(uuid.UUID(chain_id), user.id, target.character_id,
                                                            request_text, "chat", None))

    events = chat_reply_events(listener, hub=gateway.hub, db=gateway.db, conversation_stream=stream,
                               conversation_id=str(target.conversation_id), message_id=str(message_id),
                               heartbeat_s=min(settings.gateway_sse_heartbeat_s, 5.0),
                               timeout_s=settings.gateway_chat_timeout_s, now=time.monotonic, on_chain=record_chain,
                               opening=opening)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS,
                             background=BackgroundTask(gateway.hub.unsubscribe, listener))
