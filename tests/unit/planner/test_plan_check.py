"""An LLM's plan checked against the request: what a weak model loses is put back, what it invents is dropped."""

from __future__ import annotations

from services.planner.planning.decision import Draft, EditIntent
from services.planner.planning.plan_check import reconcile
from services.planner.planning.rules import draft_by_rules


def llm(*steps: tuple[str, str] | tuple[str, str, tuple[str, ...]]) -> Draft:
    return Draft(planner="llm", intents=tuple(
        EditIntent(kind=s[0], description=s[1], prompt=s[1], negative=s[2] if len(s) > 2 else ()) for s in steps))


def checked(request: str, draft: Draft) -> Draft:
    return reconcile(draft, draft_by_rules(request, "woman"), request, "woman")


def test_a_negation_the_model_dropped_is_put_back() -> None:
    draft = checked("park, but no hat", llm(("background", "Change the background to a park, keep her unchanged")))
    assert [i.kind for i in draft.intents] == ["background"] and "hat" in draft.negative


def test_a_kind_the_model_left_out_is_added_and_kept_things_are_kept_everywhere() -> None:
    draft = checked("keep hair, suit, office, smiling", llm(
        ("outfit", "Change her outfit to a suit"), ("pose", "Make her smile")))
    assert [i.kind for i in draft.intents] == ["background", "outfit", "pose"]
    assert "office" in draft.intents[0].prompt
    assert all("hair" in i.prompt for i in draft.intents)
    assert "added the background step the model left out" in draft.note


def test_a_plan_that_kept_only_one_step_gets_the_others_back() -> None:
    request = "cyberpunk city at night in a leather jacket, arms crossed"
    draft = checked(request, llm(("outfit", "Dress her in a black leather jacket")))
    assert [i.kind for i in draft.intents] == ["background", "outfit", "pose"]
    assert draft.intents[1].prompt == "Dress her in a black leather jacket"


def test_an_invented_scene_for_a_question_is_dropped() -> None:
    draft = checked("what's 2+2?", llm(("background", "Change the background to a dark room")))
    assert draft.intents == () and "nothing in it is in the request" in draft.note


def test_the_prompts_example_copied_into_an_unrelated_request_is_dropped() -> None:
    draft = checked("in a red dress", llm(("background", "Change the background to a sunny beach at sunset"),
                                          ("outfit", "Change her outfit to a red dress")))
    assert [i.kind for i in draft.intents] == ["outfit"]


def test_a_step_that_lost_the_place_is_the_rules_step() -> None:
    draft = checked("on a snowy mountain, waving", llm(("background", "Change the background to a forest"),
                                                      ("pose", "Make her wave at the camera")))
    assert "snowy mountain" in draft.intents[0].prompt and draft.intents[1].prompt == "Make her wave at the camera"
    assert "lost 'a snowy mountain'" in draft.note


def test_a_kind_the_user_keeps_is_not_changed() -> None:
    draft = checked("keep the background, in a red dress", llm(
        ("background", "Change the background to a red room"), ("outfit", "Change her outfit to a red dress")))
    assert [i.kind for i in draft.intents] == ["outfit"] and "left the background alone" in draft.note


def test_a_good_plan_is_left_as_it_is() -> None:
    plan = llm(("background", "Change the background to a sunny beach, keep her unchanged"),
               ("pose", "Make her wave at the camera, keep her face unchanged"))
    draft = checked("on a beach, waving", plan)
    assert draft.intents == plan.intents and draft.note is None
