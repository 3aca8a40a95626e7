"""Planning a request as the planner service does (character from the log), on real Postgres."""

from __future__ import annotations

import uuid

import pytest

from contracts import ImageRef, RequestChain
from services.planner.planning import LlmPlanner, Planner, Registry, UserPolicy
from services.planner.requests import RequestPlanning
from services.planner.saga.decide import PlanAccepted, PlanRefused
from services.runtime.eventstore import EventStore
from services.runtime.prices import Price, PriceTable
from tests.fakes.planner_llm import ScriptedChat, plan_json

pytestmark = pytest.mark.integration

REFERENCE = ImageRef(sha256="a" * 64, media_type="image/png", width=8, height=8, bytes=10)


def request(text: str) -> RequestChain:
    return RequestChain(chain_id=uuid.uuid4(), character_id="ad-hoc", user_id="u-1", request_text=text,
                        reference_image=REFERENCE)


async def test_every_model_call_of_a_plan_is_priced_into_the_decision(store: EventStore) -> None:
    """Two calls (the first answer was not a plan), priced by the shared table; an empty plan is still paid."""
    chat = ScriptedChat(["Sure! Here you go.",
                         plan_json(("background", "Change the background to a beach, keep the person unchanged")),
                         '{"steps": []}'])
    prices = PriceTable({"local-qwen": Price(input=1.0, output=2.0)})
    planning = RequestPlanning(Planner(Registry.load(), LlmPlanner(chat)), store, user_policy=UserPolicy(),
                               default_style="photoreal", llm_model="local-qwen", prices=prices)
    accepted, _ = await planning.plan(request("on a beach"))
    assert isinstance(accepted, PlanAccepted) and accepted.llm_usage is not None
    usage = accepted.llm_usage
    asked = sum(len(m["content"].split()) for call in chat.calls[:2] for m in call)
    assert (usage.model, usage.calls, usage.prompt_tokens, usage.tokens_estimated) == ("local-qwen", 2, asked, False)
    assert usage.cost_usd == round((usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6, 8)
    refused, _ = await planning.plan(request("what is 2+2"))  # a question: the model says there is nothing
    assert isinstance(refused, PlanRefused) and refused.rule == "planner.nothing_to_edit"
    assert refused.llm_usage is not None and refused.llm_usage.calls == 1


async def test_a_request_that_comes_back_is_not_planned_again(store: EventStore) -> None:
    """The append after planning failed (the database went away): the redelivered request reuses the plan."""
    chat = ScriptedChat([plan_json(("background", "Change the background to a beach, keep the person unchanged"))])
    planning = RequestPlanning(Planner(Registry.load(), LlmPlanner(chat)), store, user_policy=UserPolicy(),
                               default_style="photoreal")
    request = RequestChain(chain_id=uuid.uuid4(), character_id="ad-hoc", user_id="u-1", request_text="on a beach",
                           reference_image=ImageRef(sha256="a" * 64, media_type="image/png", width=8, height=8,
                                                    bytes=10))
    first = await planning.plan(request)
    again = await planning.plan(request)
    assert isinstance(first[0], PlanAccepted) and first[0].planner == "llm"
    assert again == first and len(chat.calls) == 1
    other = request.model_copy(update={"chain_id": uuid.uuid4()})
    with pytest.raises(AssertionError, match="no scripted reply left"):
        await planning.plan(other)  # another chain is planned afresh (and the script has no answer left)
