"""The drift budget, pure: per-step drift, its sum along a chain and into a follow-up, the re-anchor decision,
and chains recorded before any of it replaying as they did."""

from __future__ import annotations

import uuid

import pytest

from contracts import (
    ChainCompleted,
    ChainReanchored,
    FaceScored,
    RenderCompleted,
    RenderStep,
    RequestChain,
    ScoreFace,
    StepAccepted,
)
from services.planner.saga import drift
from contracts import REGISTRY
from services.planner.saga.decide import PlanAccepted, StartChain, decide
from services.planner.saga.state import ChainState, evolve, fold
from tests.unit.planner.test_saga import CHAIN, REFERENCE, Driver, image, start, steps


def scored(run: Driver, score: float, previous: float | None) -> None:
    cmd = run.commands[-1]
    assert isinstance(cmd, ScoreFace)
    run(FaceScored(chain_id=CHAIN, step=cmd.step, attempt=cmd.attempt, score=score, faces_found=1, encoder="dlib",
                   previous_score=previous))


def step(run: Driver, n: int, score: float, previous: float | None) -> None:
    run.render(n)
    scored(run, score, previous)


def renders(run: Driver) -> list[RenderStep]:
    return [c for c in run.commands if isinstance(c, RenderStep)]


def accepted(run: Driver, decision_events) -> StepAccepted:
    return next(e for e in decision_events if isinstance(e, StepAccepted))


@pytest.mark.parametrize(("previous", "score", "edited_reference", "expected"), [
    (70.0, 45.0, False, 30.0),      # against the picture it edited
    (None, 45.0, True, 55.0),       # it edited the reference: its own score is that similarity
    (None, 45.0, False, None),      # not measured (no face in the edited picture, an old facecheck)
    (100.0, 45.0, False, 0.0),
])
def test_a_steps_drift_is_100_minus_its_similarity_to_what_it_edited(previous, score, edited_reference,
                                                                       expected) -> None:
    assert drift.step_drift(previous, score, edited_reference=edited_reference) == expected


def test_the_sum_grows_by_measured_steps_only_and_a_budget_is_passed_strictly() -> None:
    assert drift.accumulate(100.0, 30.5) == 130.5 and drift.accumulate(100.0, None) == 100.0
    assert drift.reanchor_reason(150.0, 150.0) is None
    assert "150.5 past the budget 150" in (drift.reanchor_reason(150.5, 150.0) or "")
    assert drift.reanchor_reason(1e6, None) is None


def test_a_follow_up_inherits_the_sum_at_the_picture_it_edits() -> None:
    assert drift.inherited((40.0, 90.0, 120.0), 1) == 90.0
    assert drift.inherited((40.0, 90.0, 120.0), None) == 120.0
    assert drift.inherited((), 2) == 0.0 and drift.inherited((40.0,), 5) == 0.0


def test_the_edited_picture_is_scored_too_unless_it_is_the_reference() -> None:
    run = Driver()
    run(start("background", "outfit", drift_budget=500.0))
    run.render(1)
    first = run.commands[-1]
    assert isinstance(first, ScoreFace) and first.previous_image is None  # step 1 edits the reference
    scored(run, 60.0, None)
    run.render(2)
    second = run.commands[-1]
    assert isinstance(second, ScoreFace) and second.previous_image == image(1)


def test_a_chain_sums_its_drift_and_re_anchors_the_step_after_the_budget_is_passed() -> None:
    run = Driver()
    run(start("background", "outfit", "pose", "background", drift_budget=100.0))
    step(run, 1, 60.0, None)            # 40 (edited the reference)
    step(run, 2, 55.0, 70.0)            # +30 = 70
    run.render(3)
    cmd = run.commands[-1]
    decision = run(FaceScored(chain_id=CHAIN, step=cmd.step, attempt=cmd.attempt, score=52.0, faces_found=1,
                              encoder="dlib", previous_score=65.0))   # +35 = 105 > 100
    kept = accepted(run, decision.events)
    assert (kept.drift, kept.cumulative_drift) == (35.0, 105.0)
    anchor = next(e for e in decision.events if isinstance(e, ChainReanchored))
    assert (anchor.step, anchor.cumulative_drift, anchor.budget) == (3, 105.0, 100.0)
    assert anchor.replaced_image == image(3) and anchor.input_image == REFERENCE
    assert run.log[-4:] == ["step_scored", "step_accepted", "reanchored", "step_requested"]
    assert renders(run)[-1].input_image == REFERENCE    # the 4th step edits the reference
    assert run.state.drift == 0.0 and run.state.drifts == (40.0, 70.0, 105.0)
    step(run, 4, 58.0, None)            # edited the reference again: 42 from a fresh start
    assert run.state.drifts[-1] == 42.0 and run.log[-1] == "completed"


def test_within_the_budget_each_step_edits_the_last_picture() -> None:
    run = Driver()
    run(start("background", "outfit", "pose", drift_budget=1000.0))
    for n in (1, 2, 3):
        step(run, n, 60.0, 60.0)
    assert [r.input_image for r in renders(run)] == [REFERENCE, image(1), image(2)]
    assert "reanchored" not in run.log


def follow_up(parent_drift: float, budget: float | None) -> StartChain:
    request = RequestChain(chain_id=uuid.uuid4(), character_id="luna", user_id="u1", request_text="now wave",
                           reference_image=REFERENCE, parent_chain_id=CHAIN, branch_from_step=0,
                           input_image=image(9))
    return StartChain(request, PlanAccepted(steps("pose"), "rules"), inherited_drift=parent_drift,
                      drift_budget=budget)


def test_a_follow_up_past_the_budget_starts_from_the_reference_and_says_why() -> None:
    run = Driver()
    decision = run(follow_up(160.0, 150.0))
    assert run.log == ["requested", "planned", "reanchored", "step_requested"]
    anchor = decision.events[2]
    assert isinstance(anchor, ChainReanchored) and anchor.replaced_image == image(9)
    assert renders(run)[0].input_image == REFERENCE
    planned = decision.events[1]
    assert (planned.inherited_drift, planned.drift_budget) == (160.0, 150.0)


def test_a_follow_up_within_the_budget_edits_its_parents_picture_and_carries_the_sum_on() -> None:
    run = Driver()
    run(follow_up(100.0, 150.0))
    assert renders(run)[0].input_image == image(9)
    run.render(10)
    assert run.commands[-1].previous_image == image(9)
    scored(run, 50.0, 80.0)
    assert run.state.drifts == (120.0,)


def test_without_a_budget_nothing_is_measured_or_re_anchored() -> None:
    run = Driver()
    decision = run(follow_up(10_000.0, None))
    assert "reanchored" not in run.log and decision.events[1].drift_budget is None
    assert renders(run)[0].input_image == image(9)
    run.render(10)
    decision = run(FaceScored(chain_id=CHAIN, step=0, attempt=1, score=50.0, faces_found=1, encoder="dlib",
                              previous_score=20.0))
    kept = accepted(run, decision.events)
    assert (kept.drift, kept.cumulative_drift) == (None, None)


# The fields this feature added; a log written before it has none of them.
NEW_FIELDS = {"chain.planned": {"threshold_source", "inherited_drift", "drift_budget"},
              "chain.step_scored": {"previous_score"}, "chain.step_accepted": {"drift", "cumulative_drift"}}


def old_log() -> list:
    """A two-step chain as an old planner recorded it, read back through the registry like the store does."""
    state, events = ChainState(), []
    triggers = [start("background", "outfit"),
                RenderCompleted(chain_id=CHAIN, step=0, attempt=1, image=image(1), workflow_hash="h", backend="b",
                                engine="draft"),
                FaceScored(chain_id=CHAIN, step=0, attempt=1, score=70.0, faces_found=1, encoder="dlib"),
                RenderCompleted(chain_id=CHAIN, step=1, attempt=1, image=image(2), workflow_hash="h", backend="b",
                                engine="draft")]
    for trigger in triggers:
        for event in decide(state, trigger).events:
            state = evolve(state, event)
            body = event.model_dump(mode="json", exclude=NEW_FIELDS.get(event.type, set()) | {"type", "version"})
            events.append(REGISTRY.parse(event.type, 1, body))
    return events


def test_old_chains_without_the_new_fields_replay_and_go_on_as_before() -> None:
    events = old_log()
    assert all(not (set(e.model_fields_set) & NEW_FIELDS.get(e.type, set())) for e in events)
    state = fold(events)
    assert state.plan is not None and state.plan.drift_budget is None and state.plan.threshold_source is None
    assert (state.drift, state.drifts, state.step) == (0.0, (0.0,), 1)
    # A new facecheck answers with a previous score: the old chain still records no drift, and completes.
    decision = decide(state, FaceScored(chain_id=CHAIN, step=1, attempt=1, score=65.0, faces_found=1,
                                        encoder="dlib", previous_score=30.0))
    kept = next(e for e in decision.events if isinstance(e, StepAccepted))
    assert kept.cumulative_drift is None and isinstance(decision.events[-1], ChainCompleted)
