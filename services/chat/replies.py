"""Produces a character's reply: streamed from the LLM when one is configured, else (or when it fails)
from the offline persona, every fragment published live as `ChatTokenDelta` while it is produced.

The picture a reply speaks of is settled before any word is written (`picture_plan`), so the words
and the recorded outcome agree: "it's on its way" comes with a chain, "add a reference photo first"
with `needs_reference`, "log in for more" with `login_required`. A message the phrase rules pass over
but that may wish for a picture is first put to the model as a cheap yes/no question (`wishes`). A
reply that still contradicts the decision (a refusal while the picture is made, a picture promised
that nobody makes: `agreement`) is asked for once more, then written from the persona's lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from contracts import ChatTokenDelta, Envelope
from contracts.streams import conversation_stream
from prometheus_client import Counter

from services.chat.agreement import Disagreement, PictureOutcome, disagreement
from services.runtime.prices import PriceTable
from services.chat.domain.characters import CharacterState
from services.chat.domain.conversations import (
    ConversationState, Exchange, Picture, PicturePlan, Pictures, RecordReply, edit_base, picture_plan,
    requested_scene,
)
from services.chat.errors import LlmUnavailable
from services.chat.follow_up import PictureBasis, picture_basis
from services.chat.intent import DEFAULT_SCENE
from services.chat.llm import LlmAnswer, ReplyModel
from services.chat.offline import OFFLINE_MODEL, offline_reply, words
from services.chat.personas import PersonaBook
from services.chat.prompts import llm_messages
from services.chat.wishes import worth_asking
from services.runtime.ids import derived_id
from services.runtime.metrics import LLM_COST, LLM_FALLBACKS, label_value

__all__ = ["LivePublisher", "Replier", "WishCheck"]

log = logging.getLogger(__name__)

LivePublisher = Callable[[Envelope], Awaitable[None]]
# When a message the phrase rules passed over is put to the model as a picture wish: never, when it
# speaks of seeing, looking or wearing (`wishes.worth_asking`), or always (one more call per message).
WishCheck = Literal["off", "hinted", "always"]

WISH_CHECKS = Counter("likeness_chat_picture_wish_checks_total",
                      "Picture-wish questions put to the model, by verdict (picture, no_picture, unavailable)",
                      ["verdict"])
DISAGREEMENTS = Counter("likeness_chat_reply_disagreements_total",
                        "Replies whose words contradicted the app's picture decision, by kind and by what fixed "
                        "them (asked_again, persona_line)", ["kind", "outcome"])


class Replier:
    """Writes replies; holds the LLM (or none), the personas, the prices and the live publisher."""

    def __init__(
        self, book: PersonaBook, prices: PriceTable, llm: ReplyModel | None, live: LivePublisher,
        clock: Callable[[], datetime], *, history_messages: int = 20, history_chars: int = 12_000,
        offline_delay_s: float = 0.0, picture_tool: bool = True, wish_check: WishCheck = "hinted",
    ) -> None:
        self._book, self._prices, self._llm, self._live, self._clock = book, prices, llm, live, clock
        self._history = {"max_messages": history_messages, "max_chars": history_chars}
        self._offline_delay_s = offline_delay_s
        self._picture_tool = picture_tool
        self._wish_check = wish_check

    async def reply(
        self, conversation: ConversationState, character: CharacterState, exchange: Exchange, *, reply_id: UUID,
        chain_id: UUID, pictures_allowed: bool = True, pictures: Pictures | None = None,
    ) -> RecordReply:
        """The reply to `exchange`, streamed live as it is made; ready to be decided on and recorded."""
        assert conversation.conversation_id is not None and character.profile is not None
        deltas = _Deltas(self._live, self._clock, conversation.conversation_id, exchange.message_id, reply_id)
        spent = _Spent()
        follow = _FollowUp(conversation, pictures or {}, picture_basis(exchange.text))
        # A message that went back to an earlier picture asks for no new one.
        scene = None if exchange.chain_id or exchange.picked else requested_scene(conversation, follow.pictures,
                                                                                 exchange.text)
        asked = False
        if (self._llm is not None and scene is None and exchange.chain_id is None and not exchange.picked
                and self._worth_asking(exchange)):
            asked = True
            scene = await self._wished_scene(self._llm, character.profile.name, exchange.text, spent)
        plan = picture_plan(exchange, character, scene, chain_id, allowed=pictures_allowed, base=follow.base())
        fallback = "no_llm" if self._llm is None else "persona_line"
        if self._llm is not None:
            try:
                text, plan = await self._written(self._llm, conversation, character, exchange, plan, deltas, spent,
                                                 chain_id=chain_id, pictures_allowed=pictures_allowed, follow=follow,
                                                 offer_tool=self._picture_tool and plan is None and not asked
                                                 and not exchange.picked)
                if text is not None:
                    return self._record(exchange, reply_id, character, chain_id, plan, text, self._llm.model,
                                        offline=False, spent=spent, pictures_allowed=pictures_allowed, follow=follow)
            except LlmUnavailable as exc:
                fallback = "unavailable"
                # Tokens of a failed call are not recorded; those of the calls before it were spent and are.
                log.warning("conversation %s: LLM unavailable, answering offline: %s",
                            conversation.conversation_id, exc)
        LLM_FALLBACKS.labels("chat", fallback).inc()
        text = offline_reply(self._book, character.profile, exchange.message_id, picture=plan,
                             first_reply=not any(e.reply is not None for e in conversation.exchanges),
                             say_offline=conversation.offline_replies == 0 and not spent.calls)
        deltas.restart()
        for word in words(text):
            await deltas.send(word)
            if self._offline_delay_s:
                await asyncio.sleep(self._offline_delay_s)
        model = self._llm.model if self._llm is not None and spent.calls else OFFLINE_MODEL
        return self._record(exchange, reply_id, character, chain_id, plan, text, model, offline=True, spent=spent,
                            pictures_allowed=pictures_allowed, follow=follow)

    def _worth_asking(self, exchange: Exchange) -> bool:
        return self._wish_check == "always" or (self._wish_check == "hinted" and worth_asking(exchange.text))

    async def _wished_scene(self, llm: ReplyModel, name: str, text: str, spent: _Spent) -> str | None:
        """The scene of a picture wish the rules missed, by the model's verdict; None when there is none."""
        try:
            answer = await llm.wish(name, text)
        except LlmUnavailable as exc:
            WISH_CHECKS.labels("unavailable").inc()
            log.info("picture-wish check skipped, the rules' verdict stands: %s", exc)
            return None
        spent.add(answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.reported)
        WISH_CHECKS.labels("picture" if answer.wish.picture else "no_picture").inc()
        return (answer.wish.scene or DEFAULT_SCENE) if answer.wish.picture else None

    async def _written(
        self, llm: ReplyModel, conversation: ConversationState, character: CharacterState, exchange: Exchange,
        plan: PicturePlan | None, deltas: _Deltas, spent: _Spent, *, chain_id: UUID, pictures_allowed: bool,
        offer_tool: bool, follow: _FollowUp,
    ) -> tuple[str | None, PicturePlan | None]:
        """The model's reply and the picture it speaks of; text None when the model would not agree with the app."""
        assert character.profile is not None
        profile = character.profile

        async def ask(picture: PicturePlan | None, correction: Disagreement | None = None,
                      tool: bool = False) -> LlmAnswer:
            messages = llm_messages(profile, conversation, exchange.message_id, picture=picture,
                                    correction=correction, **self._history)
            answer = await llm.stream(messages, deltas.send, offer_picture_tool=tool)
            spent.add(answer.prompt_tokens, answer.completion_tokens, answer.usage_reported)
            return answer

        answer = await ask(plan, tool=offer_tool)
        if answer.picture_request is not None and plan is None:
            # The LLM asked for a picture the phrase rules missed: settle it, then let it say so in words.
            if answer.picture_basis is not None:
                follow.basis = answer.picture_basis
            plan = picture_plan(exchange, character, answer.picture_request or DEFAULT_SCENE, chain_id,
                                allowed=pictures_allowed, base=follow.base())
            deltas.restart()
            answer = await ask(plan)
        problem = disagreement(answer.text, _outcome(plan, exchange))
        if problem is None:
            return answer.text, plan
        log.warning("conversation %s: the reply %s; asking once more", conversation.conversation_id,
                    problem.replace("_", " "))
        deltas.restart()
        answer = await ask(plan, problem)
        if disagreement(answer.text, _outcome(plan, exchange)) is None:
            DISAGREEMENTS.labels(problem, "asked_again").inc()
            return answer.text, plan
        DISAGREEMENTS.labels(problem, "persona_line").inc()
        log.warning("conversation %s: the reply still %s; the persona's line is used", conversation.conversation_id,
                    problem.replace("_", " "))
        return None, plan

    def _record(
        self, exchange: Exchange, reply_id: UUID, character: CharacterState, chain_id: UUID,
        plan: PicturePlan | None, text: str, model: str, *, offline: bool, spent: _Spent, pictures_allowed: bool,
        follow: _FollowUp,
    ) -> RecordReply:
        cost = self._prices.cost(model, spent.prompt, spent.completion) if spent.calls else 0.0
        if cost:
            LLM_COST.labels("chat", label_value(model)).inc(cost)
        return RecordReply(
            message_id=exchange.message_id, reply_id=reply_id, text=text, model=model, offline=offline,
            character=character, chain_id=chain_id, prompt_tokens=spent.prompt, completion_tokens=spent.completion,
            cost_usd=cost,
            tokens_estimated=spent.estimated,
            picture_scene=plan.scene if plan is not None and exchange.chain_id is None else None,
            pictures_allowed=pictures_allowed, basis=follow.basis, pictures=follow.pictures,
        )


@dataclass
class _FollowUp:
    """Which picture a picture asked for in this reply edits: the message's words say, or the LLM's tool call."""

    conversation: ConversationState
    pictures: Pictures
    basis: PictureBasis

    def base(self) -> Picture | None:
        return edit_base(self.conversation, self.pictures, self.basis)


def _outcome(plan: PicturePlan | None, exchange: Exchange) -> PictureOutcome:
    if exchange.picked:
        return "declined"  # an earlier picture is shown again: "here it is" is true, not a false promise
    if plan is None:
        return "none"
    return "started" if plan.status == "requested" else "declined"


class _Spent:
    """The tokens of every model call made for one reply (the wish check, the reply, a second asking)."""

    def __init__(self) -> None:
        self.calls = self.prompt = self.completion = 0
        self.estimated = False

    def add(self, prompt: int, completion: int, reported: bool) -> None:
        self.calls += 1
        self.prompt += prompt
        self.completion += completion
        self.estimated = self.estimated or not reported


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
