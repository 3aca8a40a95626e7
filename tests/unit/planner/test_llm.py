"""The LLM planner on the in-tree fake: valid plans used, invalid ones retried once, then the rules serve."""

from __future__ import annotations

import json
import random

import pytest

from services.planner.planning import LlmPlanner, LlmUnavailable, Plan, Planner, Refusal
from services.planner.planning.errors import InvalidLlmAnswer
from tests.fakes.planner_llm import ScriptedChat, plan_json
from services.planner.planning.llm import PLAN_SCHEMA, parse_answer
from services.planner.planning.request_planner import NO_LLM_NOTE

BEACH = ("background", "Change the background to a beach at sunset, keep the person unchanged")
WAVE = ("pose", "Make her wave at the camera, keep her face, outfit and the background unchanged", "sitting")


async def test_a_valid_answer_is_the_draft():
    chat = ScriptedChat([plan_json(WAVE, BEACH)])
    draft = await LlmPlanner(chat).draft("on a beach at sunset, waving", "woman")
    assert draft.planner == "llm" and draft.note is None
    # Put back in the safe order whatever order the LLM wrote.
    assert [(i.kind, i.prompt, i.negative) for i in draft.intents] == [
        ("background", BEACH[1], ()), ("pose", WAVE[1], ("sitting",))]
    (messages,) = chat.calls
    assert messages[0]["role"] == "system" and '"she" / "her" / "her"' in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": "on a beach at sunset, waving"}


async def test_an_invalid_answer_is_retried_once_with_the_reason():
    chat = ScriptedChat(["sure! here is your plan", plan_json(BEACH)])
    draft = await LlmPlanner(chat).draft("on a beach", "man")
    assert draft.planner == "llm"
    assert draft.note.startswith("LLM answer invalid once (not JSON (Expecting value at line 1 column 1))")
    retry = chat.calls[1]
    assert retry[2] == {"role": "assistant", "content": "sure! here is your plan"}
    assert retry[3]["content"].startswith("That answer was not a valid plan: not JSON")


async def test_two_invalid_answers_hand_over_to_the_rules():
    schema_violation = json.dumps({"steps": [{"kind": "hair", "instruction": "Change her hair", "negative": ""}]})
    chat = ScriptedChat(["{not json", schema_violation])
    draft = await LlmPlanner(chat).draft("on a beach, sitting", "woman")
    assert draft.planner == "rules"
    assert [i.kind for i in draft.intents] == ["background", "pose"]
    assert draft.note.startswith("LLM answer invalid twice: not a plan (steps.0.kind: Input should be")
    assert len(chat.calls) == 2


async def test_an_unavailable_llm_hands_over_at_once():
    chat = ScriptedChat([LlmUnavailable("no answer within 5s")])
    draft = await LlmPlanner(chat).draft("on a beach", "woman")
    assert (draft.planner, draft.note) == ("rules", "LLM unavailable: no answer within 5s")
    assert len(chat.calls) == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ('{"steps": [' + ",".join(['{"kind": "pose", "instruction": "Make her wave", "negative": ""}'] * 4) + "]}",
         "not a plan (steps: Tuple should have at most 3 items"),
        (plan_json(BEACH, BEACH), "not a plan (steps: Value error, at most one step of each kind"),
        (json.dumps({"steps": [{"kind": "pose", "instruction": "Wave", "negative": ""}]}),
         "not a plan (steps.0.instruction: String should have at least 8 characters"),
        (json.dumps({"steps": [], "extra": 1}), "not a plan ("),
        ("[1, 2]", "not a plan (answer: Input should be a valid dictionary"),
    ],
)
def test_answers_that_are_not_plans(answer, reason):
    with pytest.raises(InvalidLlmAnswer) as caught:
        parse_answer(answer)
    assert str(caught.value).startswith(reason)
    assert caught.value.answer == answer


def test_a_fenced_answer_is_accepted():
    assert parse_answer(f"```json\n{plan_json(BEACH)}\n```").steps[0].kind == "background"


def test_the_schema_matches_the_answer_model():
    step = PLAN_SCHEMA["properties"]["steps"]["items"]
    assert step["properties"]["kind"]["enum"] == ["background", "outfit", "pose"]
    assert set(step["required"]) == {"kind", "instruction", "negative"}


async def test_planner_without_llm_uses_rules_and_says_so(mira, sfw_user, registry):
    plan = await Planner(registry).plan("on a beach --seed 5", mira, sfw_user, seed_source=random.Random(0))
    assert isinstance(plan, Plan)
    assert (plan.planner, plan.note, plan.steps[0].seed) == ("rules", NO_LLM_NOTE, 5)


async def test_planner_with_llm(mira, sfw_user, registry):
    chat = ScriptedChat([plan_json(BEACH)])
    plan = await Planner(registry, LlmPlanner(chat)).plan("beach please -w 512", mira, sfw_user, seed_source=3)
    assert plan.planner == "llm" and plan.steps[0].width == 512
    assert chat.calls[0][1]["content"] == "beach please"


async def test_refused_words_never_reach_the_llm(mira, sfw_user, registry):
    chat = ScriptedChat([])
    decision = await Planner(registry, LlmPlanner(chat)).plan("naked on a beach", mira, sfw_user, seed_source=3)
    assert isinstance(decision, Refusal) and decision.rule == "content_policy.words.user_limit"
    assert chat.calls == []


async def test_user_errors_become_refusals_with_their_rule(mira, sfw_user, registry):
    decision = await Planner(registry).plan("on a beach --count 7", mira, sfw_user, seed_source=3)
    assert decision == Refusal(reason="--count must be between 1 and 4, got 7", rule="modifier.count")
    unknown = await Planner(registry).plan("on a beach --style oil", mira, sfw_user, seed_source=3)
    assert unknown.rule == "modifier.style"
