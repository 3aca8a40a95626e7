"""The chain saga's decisions, driven event by event without any I/O."""

from __future__ import annotations

import uuid

from contracts import (
    CancelChain,
    ChainCompleted,
    ChainFailed,
    FaceCheckFailed,
    FaceScored,
    ImageRef,
    PlannedStep,
    RenderCompleted,
    RenderFailed,
    RenderStep,
    RequestChain,
    ScoreFace,
)
from services.planner.saga.decide import Decision, PlanAccepted, PlanRefused, StartChain, decide, retry_seed
from services.planner.saga.state import ChainState, Status, evolve

CHAIN = uuid.UUID("00000000-0000-4000-8000-000000000001")


def image(n: int) -> ImageRef:
    return ImageRef(sha256=f"{n:064x}", media_type="image/png", width=512, height=512, bytes=100 + n)


REFERENCE = image(0)


def steps(*kinds: str) -> tuple[PlannedStep, ...]:
    return tuple(
        PlannedStep(index=i, kind=k, prompt=f"{k} edit", width=512, height=512, seed=100 + i, model="qwen-edit",
                    template="qwen_edit", steps=8, cfg=1.0, denoise=0.9)
        for i, k in enumerate(kinds)
    )


def start(*kinds: str, **policy) -> StartChain:
    request = RequestChain(chain_id=CHAIN, character_id="luna", user_id="u1", request_text="beach",
                           reference_image=REFERENCE)
    return StartChain(request, PlanAccepted(steps(*kinds), "rules"), **policy)


class Driver:
    """Applies each decision's events to the state, like the application does after appending."""

    def __init__(self) -> None:
        self.state = ChainState()
        self.log: list[str] = []
        self.commands: list = []

    def __call__(self, trigger) -> Decision:
        decision = decide(self.state, trigger)
        for event in decision.events:
            self.state = evolve(self.state, event)
            self.log.append(event.type.removeprefix("chain."))
        self.commands.extend(decision.commands)
        return decision

    def render(self, n: int) -> Decision:
        cmd = self.commands[-1]
        assert isinstance(cmd, RenderStep)
        return self(RenderCompleted(chain_id=CHAIN, step=cmd.step, attempt=cmd.attempt, image=image(n),
                                    workflow_hash="h", backend="b", engine="draft"))

    def score(self, value: float) -> Decision:
        cmd = self.commands[-1]
        assert isinstance(cmd, ScoreFace)
        return self(FaceScored(chain_id=CHAIN, step=cmd.step, attempt=cmd.attempt, score=value, faces_found=1,
                               encoder="dlib"))


def test_three_steps_accepted_first_time_chain_each_output_into_the_next_input() -> None:
    run = Driver()
    run(start("background", "outfit", "pose"))
    for n in (1, 2, 3):
        run.render(n)
        run.score(80.0)
    assert run.log == ["requested", "planned", "step_requested",
                       "step_rendered", "step_scored", "step_accepted", "step_requested",
                       "step_rendered", "step_scored", "step_accepted", "step_requested",
                       "step_rendered", "step_scored", "step_accepted", "completed"]
    renders = [c for c in run.commands if isinstance(c, RenderStep)]
    assert [r.input_image for r in renders] == [REFERENCE, image(1), image(2)]
    assert [r.seed for r in renders] == [100, 101, 102]
    assert run.state.status is Status.COMPLETED


def test_a_drifting_step_is_retried_with_a_new_recorded_seed_then_accepted() -> None:
    run = Driver()
    run(start("background"))
    run.render(1)
    retried = run.score(12.5)
    assert [e.type for e in retried.events] == ["chain.step_scored", "chain.step_retried", "chain.step_requested"]
    new_seed = retried.events[1].new_seed
    assert new_seed == retry_seed(CHAIN, 0, 2) != 100
    assert retried.commands[0].seed == new_seed and retried.commands[0].input_image == REFERENCE
    run.render(2)
    done = run.score(55.0)
    assert isinstance(done.events[-1], ChainCompleted) and done.events[-1].final_image == image(2)


def test_four_drifting_attempts_fail_the_chain_with_every_score() -> None:
    run = Driver()
    run(start("background", "pose"))
    for n, value in enumerate((10.0, 20.0, 30.0, 35.0), start=1):
        run.render(n)
        last = run.score(value)
    failed = last.events[-1]
    assert isinstance(failed, ChainFailed) and failed.step == 0
    assert [(a.attempt, a.score) for a in failed.attempts] == [(1, 10.0), (2, 20.0), (3, 30.0), (4, 35.0)]
    assert "best score 35.0 below threshold 40" in failed.reason
    assert run.state.status is Status.FAILED and not last.commands


def test_accept_best_policy_keeps_the_best_attempt_and_says_so() -> None:
    run = Driver()
    run(start("background", on_exhausted="accept_best", max_retries=1))
    run.render(1)
    run.score(30.0)
    run.render(2)
    last = run.score(20.0)
    accepted = last.events[-2]
    assert accepted.decision == "best_attempt" and accepted.image == image(1) and accepted.attempt == 1


def test_an_execution_error_ends_the_chain_with_the_node_and_message() -> None:
    run = Driver()
    run(start("pose"))
    out = run(RenderFailed(chain_id=CHAIN, step=0, attempt=1, reason="CUDA out of memory", error_kind="execution",
                           node_id="7", node_type="KSampler"))
    assert [e.type for e in out.events] == ["chain.step_failed", "chain.failed"]
    assert out.events[-1].reason == "render execution at node 7 (KSampler): CUDA out of memory"


def test_an_unreachable_backend_is_retried_until_attempts_run_out() -> None:
    run = Driver()
    run(start("pose", max_retries=1))
    first_seed = run.state.current.seed
    first = run(RenderFailed(chain_id=CHAIN, step=0, attempt=1, reason="no backend answered", error_kind="unreachable"))
    assert [e.type for e in first.events] == ["chain.step_failed", "chain.step_retried", "chain.step_requested"]
    # No picture was made: the same seed is asked for again (a user's --seed survives a restart).
    assert first.events[1].new_seed == first_seed and first.commands[0].seed == first_seed
    second = run(RenderFailed(chain_id=CHAIN, step=0, attempt=2, reason="no backend answered", error_kind="unreachable"))
    assert second.events[-1].type == "chain.failed"


def test_results_for_other_attempts_and_duplicates_decide_nothing() -> None:
    run = Driver()
    run(start("background"))
    run.render(1)
    stale = RenderCompleted(chain_id=CHAIN, step=0, attempt=1, image=image(9), workflow_hash="h", backend="b",
                            engine="draft")
    assert decide(run.state, stale).events == []
    run.score(10.0)
    late = FaceScored(chain_id=CHAIN, step=0, attempt=1, score=90.0, faces_found=1, encoder="dlib")
    assert decide(run.state, late).events == []
    assert decide(run.state, start("background")).events == []


def test_cancel_stops_the_chain_and_later_results_are_ignored() -> None:
    run = Driver()
    run(start("background"))
    out = run(CancelChain(chain_id=CHAIN, requested_by="u1", reason="changed my mind"))
    assert [e.type for e in out.events] == ["chain.cancelled"]
    assert run.render(1).events == []
    assert decide(run.state, CancelChain(chain_id=CHAIN, requested_by="u1")).events == []


def test_a_refused_plan_is_recorded_with_its_rule() -> None:
    request = start("background").request
    out = decide(ChainState(), StartChain(request, PlanRefused("explicit content is off for this user", "user.max_rating")))
    assert [e.type for e in out.events] == ["chain.requested", "chain.refused"]
    assert out.events[1].rule == "user.max_rating" and not out.commands


def test_an_unreadable_output_fails_the_face_check_stage() -> None:
    run = Driver()
    run(start("background"))
    run.render(1)
    out = run(FaceCheckFailed(chain_id=CHAIN, step=0, attempt=1, reason="cannot identify image file"))
    assert [e.type for e in out.events] == ["chain.step_failed", "chain.failed"]
    assert out.events[0].stage == "facecheck"


def test_count_fans_out_into_sibling_chains_that_do_not_fan_out_again() -> None:
    leader = start("background")
    fanned = decide(ChainState(), StartChain(leader.request, PlanAccepted(steps("background"), "rules", count=3)))
    requested = fanned.events[0]
    assert (requested.batch_id, requested.variant_count, requested.variant_index) == (CHAIN, 3, 0)
    siblings = [c for c in fanned.commands if isinstance(c, RequestChain)]
    assert [(s.variant_index, s.variant_count, s.batch_id) for s in siblings] == [(1, 3, CHAIN), (2, 3, CHAIN)]
    assert len({s.chain_id for s in siblings} | {CHAIN}) == 3
    # A sibling plans with the same --count but is already part of a batch: no second fan-out.
    sibling = decide(ChainState(), StartChain(siblings[0], PlanAccepted(steps("background"), "rules", count=3)))
    assert not [c for c in sibling.commands if isinstance(c, RequestChain)]
