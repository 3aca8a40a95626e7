"""Planning a request as the planner service does (character from the log), on real Postgres."""

from __future__ import annotations

import uuid

import pytest

from contracts import ImageRef, RequestChain
from services.planner.planning import LlmPlanner, Planner, Registry, UserPolicy
from services.planner.requests import RequestPlanning
from services.planner.saga.decide import PlanAccepted
from services.runtime.eventstore import EventStore
from tests.fakes.planner_llm import ScriptedChat, plan_json

pytestmark = pytest.mark.integration


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
