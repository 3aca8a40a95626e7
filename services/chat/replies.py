"""Produces a character's reply: streamed from the LLM when one is configured, else (or when it fails)
from the offline persona, every fragment published live as `ChatTokenDelta` while it is produced.

The picture a reply speaks of is settled before any word is written (`picture_plan`), so the words
and the recorded outcome agree: "it's on its way" comes with a chain, "add a reference photo first"
with `needs_reference`, "log in for more" with `login_required`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

from contracts import ChatTokenDelta, Envelope
from contracts.streams import conversation_stream
from services.chat.costs import PriceTable
from services.chat.domain.characters import CharacterState
from services.chat.domain.conversations import ConversationState, Exchange, PicturePlan, RecordReply, picture_plan
from services.chat.errors import LlmUnavailable
from services.chat.intent import DEFAULT_SCENE, picture_request
from services.chat.llm import ReplyModel
from services.chat.offline import OFFLINE_MODEL, offline_reply, words
from services.chat.personas import PersonaBook
from services.chat.prompts import llm_messages
from services.runtime.ids import derived_id

__all__ = ["LivePublisher", "Replier"]

log = logging.getLogger(__name__)

LivePublisher = Callable[[Envelope], Awaitable[None]]


class Replier:
    """Writes replies; holds the LLM (or none), the personas, the prices and the live publisher."""

    def __init__(
        self, book: PersonaBook, prices: PriceTable, llm: ReplyModel | None, live: LivePublisher,
        clock: Callable[[], datetime], *, history_messages: int = 20, history_chars: int = 12_000,
        offline_delay_s: float = 0.0, picture_tool: bool = True,
    ) -> None:
        self._book, self._prices, self._llm, self._live, self._clock = book, prices, llm, live, clock
        self._history = {"max_messages": history_messages, "max_chars": history_chars}
        self._offline_delay_s = offline_delay_s
        self._picture_tool = picture_tool

    async def reply(
        self, conversation: ConversationState, character: CharacterState, exchange: Exchange, *, reply_id: UUID,
        chain_id: UUID, pictures_allowed: bool = True,
    ) -> RecordReply:
        """The reply to `exchange`, streamed live as it is made; ready to be decided on and recorded."""
        assert conversation.conversation_id is not None and character.profile is not None
        scene = None if exchange.chain_id else picture_request(exchange.text)
        plan = picture_plan(exchange, character, scene, chain_id, allowed=pictures_allowed)
        deltas = _Deltas(self._live, self._clock, conversation.conversation_id, exchange.message_id, reply_id)
        profile = character.profile
        if self._llm is not None:
            def messages(picture: PicturePlan | None) -> list[dict[str, str]]:
                return llm_messages(profile, conversation, exchange.message_id, picture=picture, **self._history)

            try:
                answer = await self._llm.stream(messages(plan), deltas.send,
                                                offer_picture_tool=self._picture_tool and plan is None)
                tokens = (answer.prompt_tokens, answer.completion_tokens)
                estimated = not answer.usage_reported
                if answer.picture_request is not None and plan is None:
                    # The LLM asked for a picture the phrase rules missed: settle it, then let it say so in words.
                    plan = picture_plan(exchange, character, answer.picture_request or DEFAULT_SCENE, chain_id,
                                        allowed=pictures_allowed)
                    deltas.restart()
                    answer = await self._llm.stream(messages(plan), deltas.send)
                    tokens = (tokens[0] + answer.prompt_tokens, tokens[1] + answer.completion_tokens)
                    estimated = estimated or not answer.usage_reported
                return self._record(exchange, reply_id, character, chain_id, plan, answer.text, self._llm.model,
                                    offline=False, tokens=tokens, pictures_allowed=pictures_allowed,
                                    estimated=estimated)
            except LlmUnavailable as exc:
                # Tokens of a failed call are not recorded: the reply that is recorded is the offline one.
                log.warning("conversation %s: LLM unavailable, answering offline: %s",
                            conversation.conversation_id, exc)
        text = offline_reply(self._book, profile, exchange.message_id, picture=plan,
                             first_reply=not any(e.reply is not None for e in conversation.exchanges),
                             say_offline=conversation.offline_replies == 0)
        deltas.restart()
        for word in words(text):
            await deltas.send(word)
            if self._offline_delay_s:
                await asyncio.sleep(self._offline_delay_s)
        return self._record(exchange, reply_id, character, chain_id, plan, text, OFFLINE_MODEL, offline=True,
                            tokens=(0, 0), pictures_allowed=pictures_allowed)

    def _record(
        self, exchange: Exchange, reply_id: UUID, character: CharacterState, chain_id: UUID,
        plan: PicturePlan | None, text: str, model: str, *, offline: bool, tokens: tuple[int, int],
        pictures_allowed: bool, estimated: bool = False,
    ) -> RecordReply:
        prompt, completion = tokens
        return RecordReply(
            message_id=exchange.message_id, reply_id=reply_id, text=text, model=model, offline=offline,
            character=character, chain_id=chain_id, prompt_tokens=prompt, completion_tokens=completion,
            cost_usd=0.0 if offline else self._prices.cost(model, prompt, completion), tokens_estimated=estimated,
            picture_scene=plan.scene if plan is not None and exchange.chain_id is None else None,
            pictures_allowed=pictures_allowed,
        )


class _Deltas:
    """Publishes one reply's fragments live; `restart` begins the text again at index 0."""

    def __init__(self, live: LivePublisher, clock: Callable[[], datetime], conversation_id: UUID, message_id: UUID,
                 reply_id: UUID) -> None:
        self._live, self._clock = live, clock
        self._conversation_id, self._message_id, self._reply_id = conversation_id, message_id, reply_id
        self._index = 0
        self._sent = 0

    def restart(self) -> None:
        self._index = 0

    async def send(self, delta: str) -> None:
        if not delta:
            return
        message = ChatTokenDelta(conversation_id=self._conversation_id, message_id=self._reply_id, delta=delta,
                                 in_reply_to=self._message_id, index=self._index)
        stream = conversation_stream(self._conversation_id)
        envelope = Envelope.wrap(message, event_id=derived_id(self._reply_id, f"delta-{self._sent}"), stream=stream,
                                 occurred_at=self._clock(), correlation_id=stream,
                                 causation_id=str(self._message_id))
        self._index += 1
        self._sent += 1
        try:
            await self._live(envelope)
        except Exception as exc:  # noqa: BLE001 - live fragments are a nicety; the recorded reply is what counts
            log.debug("conversation %s: live delta not published: %s", self._conversation_id, exc)
