"""Replies as the service makes them, with a scripted LLM: live deltas, fallbacks, the picture outcome."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import REGISTRY, ChatTokenDelta, Envelope
from services.runtime.prices import PriceTable
from services.chat.errors import LlmUnavailable
from services.chat.llm import LlmAnswer
from tests.fakes.chat_llm import ScriptedReplyModel
from services.chat.offline import OFFLINE_MODEL
from services.chat.wishes import Wish
from services.chat.personas import load_personas
from services.chat.replies import Replier
from tests.unit.chat.helpers import CONVERSATION, Talk, luna, message_id

BOOK = load_personas()
NOW = datetime(2025, 1, 1, tzinfo=UTC)


class Live:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def __call__(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    @property
    def deltas(self) -> list[ChatTokenDelta]:
        return [e.open(REGISTRY) for e in self.envelopes]


def replier(llm, live: Live) -> Replier:
    return Replier(BOOK, PriceTable.load(), llm, live, lambda: NOW)


async def reply_to(text: str, llm, *, character=None, n: int = 1):
    talk = Talk()
    talk.receive(text, n, character)
    live = Live()
    record = await replier(llm, live).reply(talk.state, character or luna(), talk.state.exchange(message_id(n)),
                                            reply_id=uuid.uuid5(message_id(n), "reply"),
                                            chain_id=uuid.uuid5(message_id(n), "chain"))
    return record, live, talk


async def test_an_llm_reply_streams_live_and_is_priced() -> None:
    llm = ScriptedReplyModel([LlmAnswer("Oh, hi... nice to meet you.", 1000, 100)], model="grok-3-mini")
    record, live, _ = await reply_to("hi Luna", llm)
    assert record.text == "Oh, hi... nice to meet you." and record.model == "grok-3-mini" and not record.offline
    assert (record.prompt_tokens, record.completion_tokens) == (1000, 100)
    assert record.cost_usd == round((1000 * 0.3 + 100 * 0.5) / 1e6, 8)
    assert "".join(d.delta for d in live.deltas) == record.text
    assert [d.index for d in live.deltas] == list(range(len(live.deltas)))
    first = live.envelopes[0]
    assert first.correlation_id == f"conversation-{CONVERSATION}" and first.type == "chat.token_delta"
    assert all(d.message_id == record.reply_id and d.in_reply_to == message_id(1) for d in live.deltas)
    (messages, tool), = llm.requests
    assert tool and messages[0]["role"] == "system" and messages[-1] == {"role": "user", "content": "hi Luna"}


async def test_without_llm_the_offline_persona_answers_word_by_word() -> None:
    record, live, _ = await reply_to("hi Luna", None)
    assert record.offline and record.model == OFFLINE_MODEL and record.cost_usd == 0
    assert record.text.startswith(BOOK.get("luna").greeting) and "offline" in record.text
    assert "".join(d.delta for d in live.deltas) == record.text and len(live.deltas) > 3


async def test_a_failing_llm_falls_back_offline_and_restarts_the_stream() -> None:
    class HalfWay(ScriptedReplyModel):
        async def stream(self, messages, on_delta, *, offer_picture_tool=False):
            await on_delta("Oh, ")
            raise LlmUnavailable("connection reset")

    record, live, _ = await reply_to("hi", HalfWay())
    assert record.offline and record.model == OFFLINE_MODEL
    indices = [d.index for d in live.deltas]
    assert indices[:2] == [0, 0] and "".join(d.delta for d in live.deltas[1:]) == record.text
    assert len({e.event_id for e in live.envelopes}) == len(live.envelopes)


async def test_a_rules_picture_request_is_told_to_the_llm() -> None:
    llm = ScriptedReplyModel(["It's on its way!"])
    record, _, _ = await reply_to("send me a pic of you at the beach", llm)
    (messages, tool), = llm.requests
    assert not tool and "(at the beach)" in messages[0]["content"] and "on its way" in messages[0]["content"]
    assert record.picture_scene is None  # already requested when the message was taken in


async def test_no_reference_is_told_and_recorded() -> None:
    llm = ScriptedReplyModel(["I need a photo first."])
    record, _, _ = await reply_to("send me a selfie", llm, character=luna(reference=None))
    assert "add a reference photo" in llm.requests[0][0][0]["content"]
    assert record.picture_scene is not None
    offline, _, _ = await reply_to("send me a selfie", None, character=luna(reference=None))
    assert "reference photo" in offline.text and offline.picture_scene is not None


async def test_a_picture_tool_call_is_settled_then_put_in_words() -> None:
    llm = ScriptedReplyModel([LlmAnswer("", 50, 5, picture_request="on a mountain"), LlmAnswer("Coming!", 60, 4)])
    record, live, _ = await reply_to("I bet you are great at hiking", llm)
    assert record.picture_scene == "on a mountain" and record.text == "Coming!"
    assert (record.prompt_tokens, record.completion_tokens) == (110, 9)
    first, second = llm.requests
    assert first[1] and not second[1] and "(on a mountain)" in second[0][0]["content"]
    assert "".join(d.delta for d in live.deltas) == "Coming!"


async def test_a_wish_the_rules_miss_is_put_to_the_model_first_and_the_reply_knows() -> None:
    wish = "I wish I could see how you look in a winter coat in the snow"
    llm = ScriptedReplyModel([LlmAnswer("Oh! Bundling up now, it's on its way.", 300, 12)],
                             wishes=[Wish(True, "in a winter coat in the snow")])
    record, live, _ = await reply_to(wish, llm)
    assert llm.wish_requests == [("Luna", wish)]
    assert record.picture_scene == "in a winter coat in the snow" and not record.offline
    (messages, tool), = llm.requests
    # The picture is settled before the reply: no tool on offer, and the reply is told it is on its way.
    assert not tool and "(in a winter coat in the snow)" in messages[0]["content"]
    assert (record.prompt_tokens, record.completion_tokens) == (380, 20)
    assert "".join(d.delta for d in live.deltas) == record.text


async def test_small_talk_is_not_put_to_the_model_and_a_no_starts_nothing() -> None:
    llm = ScriptedReplyModel(["Fine, thanks!", "Ha, yes."], wishes=[Wish(False)])
    record, _, _ = await reply_to("how was your day?", llm)
    assert llm.wish_requests == [] and record.picture_scene is None
    record, _, _ = await reply_to("I saw a movie about the snow", llm)
    assert len(llm.wish_requests) == 1 and record.picture_scene is None
    # The model was asked and said no: it is not offered the tool to say otherwise.
    assert not llm.requests[-1][1]


async def test_a_wish_check_that_fails_leaves_the_rules_verdict() -> None:
    llm = ScriptedReplyModel(["Snowy days are the best."], wishes=[LlmUnavailable("HTTP 503")])
    record, _, _ = await reply_to("I love how you look in winter", llm)
    assert record.picture_scene is None and record.text == "Snowy days are the best." and not record.offline


async def test_a_refusal_while_the_picture_is_made_is_asked_for_again() -> None:
    llm = ScriptedReplyModel(["I'm sorry, but I cannot assist with that.", "Hold still... it's on its way!"])
    record, live, _ = await reply_to("send me a pic of you at the beach", llm)
    assert record.text == "Hold still... it's on its way!" and not record.offline
    first, second = llm.requests
    assert "Do not refuse" not in first[0][0]["content"] and "Do not refuse" in second[0][0]["content"]
    # The refusal was shown while it streamed; the stream starts again with the reply that agrees.
    indices = [d.index for d in live.deltas]
    assert indices.count(0) == 2
    restart = len(indices) - 1 - indices[::-1].index(0)
    assert "".join(d.delta for d in live.deltas[restart:]) == record.text


async def test_a_reply_that_refuses_twice_is_written_from_the_persona() -> None:
    llm = ScriptedReplyModel([LlmAnswer("I cannot assist with that.", 100, 7)] * 2, model="grok-3-mini")
    record, _, _ = await reply_to("send me a pic of you at the beach", llm)
    assert record.offline and "at the beach" in record.text and "offline" not in record.text
    # Both calls were paid for, and are billed to the model that made them.
    assert record.model == "grok-3-mini" and (record.prompt_tokens, record.completion_tokens) == (200, 14)
    assert record.cost_usd > 0


async def test_a_picture_promised_when_none_is_made_is_asked_for_again() -> None:
    llm = ScriptedReplyModel(["*sends a selfie from the lake* Here you go!", "The lake was lovely today."])
    record, _, _ = await reply_to("what did you do today?", llm)
    assert record.text == "The lake was lovely today." and record.picture_scene is None
    assert "No picture is sent with this reply" in llm.requests[1][0][0]["content"]
