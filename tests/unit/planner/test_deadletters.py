"""Dead letters of the renderer and facecheck, read as the results that will never come."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts import (
    REGISTRY,
    ChainFailed,
    CharacterThresholdSet,
    FaceCheckFailed,
    RenderFailed,
    RenderStep,
    ScoreFace,
    StepFailed,
)
from services.planner.deadletters import abandoned, result_envelope
from services.planner.saga.decide import Abandoned, decide
from services.runtime.ids import derived_id
from tests.factories import wrap
from tests.unit.planner.test_saga import CHAIN, REFERENCE, Driver, image, start

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def render_step(attempt: int = 1) -> RenderStep:
    return RenderStep(chain_id=CHAIN, step=0, attempt=attempt, seed=7, input_image=REFERENCE, prompt="p", width=512,
                      height=512, steps=8, cfg=1.0, model="m", template="t")


def score_face(attempt: int = 1) -> ScoreFace:
    return ScoreFace(chain_id=CHAIN, step=0, attempt=attempt, image=image(1), reference_image=REFERENCE,
                     character_id="luna")


def test_a_dead_render_step_reads_as_an_internal_render_failure_of_its_attempt() -> None:
    trigger = abandoned(render_step(attempt=2), "failed 5 times, last: TimeoutError")
    assert trigger == Abandoned(RenderFailed(chain_id=CHAIN, step=0, attempt=2, error_kind="internal",
                                             reason="the renderer gave up on this step: failed 5 times, "
                                                    "last: TimeoutError"))


def test_a_dead_score_face_reads_as_a_failed_face_check_of_its_attempt() -> None:
    trigger = abandoned(score_face(), "refused by handler: no encoder")
    assert trigger == Abandoned(FaceCheckFailed(chain_id=CHAIN, step=0, attempt=1,
                                                reason="the face check gave up on this image: "
                                                       "refused by handler: no encoder"))


def test_dead_letters_of_messages_the_planner_did_not_send_mean_nothing() -> None:
    assert abandoned(CharacterThresholdSet(character_id="luna", threshold=50.0), "whatever") is None


def test_the_stand_in_result_derives_its_id_from_the_command_and_names_it_as_cause() -> None:
    command = wrap(render_step(), f"chain-{CHAIN}")
    trigger = abandoned(command.open(REGISTRY), "gave up")
    assert trigger is not None
    first, again = result_envelope(trigger, command, NOW), result_envelope(trigger, command, NOW)
    assert first.event_id == again.event_id == derived_id(command.event_id, "dead-letter")
    assert (first.stream, first.causation_id, first.correlation_id) == (
        f"chain-{CHAIN}", str(command.event_id), command.correlation_id)
    assert first.open(REGISTRY) == trigger.result


def test_an_abandoned_render_fails_the_chain_at_once_though_internal_failures_are_retried() -> None:
    run = Driver()
    run(start("background", "pose"))
    trigger = abandoned(render_step(), "failed 5 times, last: TimeoutError")
    assert trigger is not None
    out = run(trigger)
    assert [e.type for e in out.events] == ["chain.step_failed", "chain.failed"] and not out.commands
    step_failed, failed = out.events
    assert isinstance(step_failed, StepFailed) and step_failed.stage == "render"
    assert isinstance(failed, ChainFailed)
    assert failed.reason == "render internal: the renderer gave up on this step: failed 5 times, last: TimeoutError"
    # The same dead letter again, or a real answer arriving late, decides nothing.
    assert decide(run.state, trigger).events == []
    assert run.render(1).events == []


def test_an_abandoned_attempt_that_is_not_the_one_in_flight_decides_nothing() -> None:
    run = Driver()
    run(start("background"))
    run.render(1)
    run.score(10.0)  # retried: attempt 2 is in flight
    stale_render, stale_score = abandoned(render_step(attempt=1), "x"), abandoned(score_face(attempt=1), "x")
    assert stale_render is not None and stale_score is not None
    assert decide(run.state, stale_render).events == [] and decide(run.state, stale_score).events == []


def test_an_abandoned_face_check_fails_the_chain_at_the_face_check_stage() -> None:
    run = Driver()
    run(start("background"))
    trigger = abandoned(score_face(), "delivered 6 times without an answer (crash or timeout)")
    assert trigger is not None
    assert decide(run.state, trigger).events == []  # nothing rendered yet: no face check in flight
    run.render(1)
    out = run(trigger)
    assert [e.type for e in out.events] == ["chain.step_failed", "chain.failed"]
    assert out.events[0].stage == "facecheck"
    assert out.events[-1].reason == ("face check failed: the face check gave up on this image: "
                                     "delivered 6 times without an answer (crash or timeout)")
