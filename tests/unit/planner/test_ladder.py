"""The retry ladder, driven event by event through the pure saga: each rung is an event with what it changed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts import ChainFailed, FaceScored, LoraUse, PlannedStep, RenderFailed, RenderStep, StepRetried
from contracts.audit import build_audit
from services.launcher.chain_commands import render_audit
from services.planner.saga.decide import decide, retry_seed
from services.planner.saga.ladder import Rung, face_mover, retry_rung
from services.planner.saga.state import Status
from tests.unit.planner.test_saga import CHAIN, REFERENCE, Driver, image, start

STYLE = LoraUse(name="anime", strength=0.9, role="style")
CONCEPT = LoraUse(name="red-dress", strength=0.8, role="concept")
FACE = LoraUse(name="luna", strength=1.0, role="character")
AT = datetime(2026, 12, 7, tzinfo=UTC)
LADDER = {"retry_ladder": True, "restore_template": "face_restore"}


def planned(denoise: float | None = 0.9, loras: tuple[LoraUse, ...] = (FACE, STYLE)) -> PlannedStep:
    return PlannedStep(index=0, kind="background", prompt="background edit", width=512, height=512, seed=100,
                       model="qwen-edit", template="qwen_edit", steps=8, cfg=1.0, denoise=denoise, loras=loras)


class Recording(Driver):
    """A Driver that keeps the events themselves, for the audit."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list = []

    def __call__(self, trigger):
        decision = super().__call__(trigger)
        self.events.extend(decision.events)
        return decision


def ladder_run(step: PlannedStep | None = None, **policy) -> Recording:
    run = Recording()
    begin = start("background", **{**LADDER, **policy})
    if step is not None:
        begin = begin.__class__(begin.request, begin.plan.__class__((step,), "rules"), **{**LADDER, **policy})
    run(begin)
    return run


def drift(run: Driver, n: int, score: float = 20.0) -> StepRetried | None:
    """Render attempt n's picture, score it below the threshold; the StepRetried that followed, if any."""
    run.render(n)
    decision = run.score(score)
    retried = [e for e in decision.events if isinstance(e, StepRetried)]
    return retried[0] if retried else None


def renders(run: Driver) -> list[RenderStep]:
    return [c for c in run.commands if isinstance(c, RenderStep)]


def test_rungs_climb_reseed_lower_denoise_lower_lora_then_restore_the_best_attempt() -> None:
    run = ladder_run(planned())

    rungs = [drift(run, 1, 20.0), drift(run, 2, 35.0), drift(run, 3, 25.0), drift(run, 4, 30.0)]

    assert [r.rung for r in rungs] == ["reseed", "lower_denoise", "lower_lora", "face_restore"]
    assert [r.next_attempt for r in rungs] == [2, 3, 4, 5]
    assert [r.new_seed for r in rungs] == [retry_seed(CHAIN, 0, n) for n in (2, 3, 4, 5)]
    assert (rungs[0].denoise, rungs[0].loras) == (None, None)
    assert rungs[1].denoise == pytest.approx(0.72) and rungs[1].loras is None
    # The style LoRA is lowered, the character's own is not; the lowered denoise is kept.
    assert rungs[2].denoise == pytest.approx(0.72)
    assert rungs[2].loras == (FACE, STYLE.model_copy(update={"strength": 0.54}))
    # The restore works on attempt 2, the best so far (35), with the reference as its second picture.
    assert (rungs[3].template, rungs[3].restores_attempt) == ("face_restore", 2)
    assert "face restore of attempt 2" in rungs[3].reason
    sent = renders(run)
    assert [(r.attempt, r.denoise, r.template) for r in sent] == [
        (1, 0.9, "qwen_edit"), (2, 0.9, "qwen_edit"), (3, pytest.approx(0.72), "qwen_edit"),
        (4, pytest.approx(0.72), "qwen_edit"), (5, None, "face_restore")]
    assert sent[3].loras == rungs[2].loras
    restore = sent[4]
    assert (restore.input_image, restore.reference_image, restore.loras) == (image(2), REFERENCE, ())
    assert all(r.reference_image is None for r in sent[:4])
    # Every rung, the restore included, is the same user's work to the renderer's fair share.
    assert {r.user_id for r in sent} == {run.state.request.user_id}


def test_a_restore_that_passes_is_accepted() -> None:
    run = ladder_run(planned())
    for n in (1, 2, 3, 4):
        drift(run, n)
    run.render(5)
    run.score(55.0)
    assert run.log[-2:] == ["step_accepted", "completed"]
    assert run.state.status is Status.COMPLETED and run.state.accepted == (image(5),)


def test_a_restore_that_drifts_too_fails_with_every_attempt_or_keeps_the_best() -> None:
    failing = ladder_run(planned())
    for n, score in zip((1, 2, 3, 4, 5), (20.0, 35.0, 25.0, 30.0, 33.0), strict=True):
        assert (drift(failing, n, score) is None) == (n == 5)
    failed = failing.state
    assert failed.status is Status.FAILED and "all 5 attempts" in (failed.failure or "")

    keeping = ladder_run(planned(), on_exhausted="accept_best")
    for n, score in zip((1, 2, 3, 4, 5), (20.0, 35.0, 25.0, 30.0, 33.0), strict=True):
        drift(keeping, n, score)
    assert keeping.state.status is Status.COMPLETED and keeping.state.accepted == (image(2),)


def test_a_restore_the_renderer_cannot_run_ends_the_step_as_the_retries_left_it() -> None:
    run = ladder_run(planned(), on_exhausted="accept_best")
    for n, score in zip((1, 2, 3, 4), (20.0, 35.0, 25.0, 30.0), strict=True):
        drift(run, n, score)
    run(RenderFailed(chain_id=CHAIN, step=0, attempt=5, reason="unknown template 'face_restore'",
                     error_kind="validation"))
    assert run.log[-3:] == ["step_failed", "step_accepted", "completed"]
    assert run.state.accepted == (image(2),)


def test_rungs_that_change_nothing_are_skipped() -> None:
    # No LoRA that moves the face, denoise already at the floor: every retry is a plain re-seed.
    run = ladder_run(planned(denoise=0.5, loras=(FACE,)), restore_template=None)
    rungs = [drift(run, n) for n in (1, 2, 3)]
    assert [r.rung for r in rungs] == ["reseed"] * 3
    assert drift(run, 4) is None and run.state.status is Status.FAILED
    assert [r.denoise for r in renders(run)] == [0.5] * 4


def test_an_unset_denoise_is_lowered_to_0_85_and_retries_past_the_top_keep_what_was_lowered() -> None:
    run = ladder_run(planned(denoise=None, loras=(CONCEPT,)), max_retries=5, restore_template=None)
    rungs = [drift(run, n) for n in (1, 2, 3, 4, 5)]
    assert [r.rung for r in rungs] == ["reseed", "lower_denoise", "lower_lora", "reseed", "reseed"]
    assert [r.denoise for r in rungs[1:]] == [0.85] * 4
    assert rungs[4].loras == (CONCEPT.model_copy(update={"strength": 0.48}),)


def test_plain_re_rolls_stay_for_chains_planned_without_the_ladder() -> None:
    run = ladder_run(planned(), retry_ladder=False)
    rungs = [drift(run, n) for n in (1, 2, 3)]
    assert [(r.rung, r.denoise, r.loras) for r in rungs] == [(None, None, None)] * 3
    assert drift(run, 4) is None and run.state.status is Status.FAILED
    assert {(r.denoise, r.loras, r.template) for r in renders(run)} == {(0.9, (FACE, STYLE), "qwen_edit")}


def test_no_second_tries_means_no_restore_either() -> None:
    run = ladder_run(planned(), max_retries=0)
    assert drift(run, 1) is None and run.state.status is Status.FAILED


def test_a_render_failure_repeats_the_rung_with_the_same_seed_and_does_not_climb() -> None:
    run = ladder_run(planned())
    drift(run, 1)
    drift(run, 2)  # attempt 3 is lower_denoise
    decision = run(RenderFailed(chain_id=CHAIN, step=0, attempt=3, reason="backend gone", error_kind="unreachable"))
    (again,) = [e for e in decision.events if isinstance(e, StepRetried)]
    assert (again.rung, again.denoise, again.new_seed) == (None, pytest.approx(0.72), retry_seed(CHAIN, 0, 3))
    assert renders(run)[-1].denoise == pytest.approx(0.72)
    # The lost render used one of the 3 retries (as before the ladder), so the next drift goes to the restore.
    assert drift(run, 4).rung == "face_restore"


def test_a_redelivered_score_decides_nothing_and_a_replay_decides_the_same_rung() -> None:
    run = ladder_run(planned())
    drift(run, 1)
    run.render(2)
    scored = FaceScored(chain_id=CHAIN, step=0, attempt=2, score=20.0, faces_found=1, encoder="dlib")
    before = run.state
    first = decide(before, scored)
    assert decide(before, scored) == first  # deterministic
    run(scored)
    assert decide(run.state, scored).events == []  # redelivered after it was decided
    assert [e.rung for e in first.events if isinstance(e, StepRetried)] == ["lower_denoise"]


def test_the_failed_chain_lists_the_restore_attempt() -> None:
    run = ladder_run(planned())
    for n in (1, 2, 3, 4):
        drift(run, n)
    run.render(5)
    (failed,) = [e for e in run.score(30.0).events if isinstance(e, ChainFailed)]
    assert [(a.attempt, a.seed, a.score) for a in failed.attempts] == [
        (1, 100, 20.0), *((n, retry_seed(CHAIN, 0, n), 20.0) for n in (2, 3, 4)), (5, retry_seed(CHAIN, 0, 5), 30.0)]


def test_face_mover_prefers_the_strongest_style_lora_and_never_the_character() -> None:
    weak_style = LoraUse(name="sketch", strength=0.5, role="style")
    assert face_mover((FACE, CONCEPT, weak_style, STYLE)) == 3
    assert face_mover((FACE, CONCEPT)) == 1
    assert face_mover((FACE,)) is None
    assert face_mover((LoraUse(name="faint", strength=0.2, role="style"),)) is None


def test_retry_rung_refuses_a_retry_without_a_drifted_attempt() -> None:
    with pytest.raises(ValueError, match="drifted"):
        retry_rung(planned(), edits=True, drifted=0)
    assert retry_rung(planned(), edits=False, drifted=2) == Rung("lower_lora", None,
                                                                  (FACE, STYLE.model_copy(update={"strength": 0.54})))


def test_the_audit_shows_each_attempts_rung_and_what_it_changed() -> None:
    run = ladder_run(planned())
    for n in (1, 2, 3, 4):
        drift(run, n, 20.0 + n)
    run.render(5)
    run.score(50.0)
    audit = build_audit(str(CHAIN), [(event, AT) for event in run.events])
    assert [a.rung for a in audit.steps[0].attempts] == [
        None, "reseed", "lower_denoise: denoise 0.72", "lower_lora: denoise 0.72, loras luna@1, anime@0.54",
        "face_restore: template face_restore on attempt 4"]
    text = render_audit(audit)
    assert "-> retried" in text and "[rung lower_denoise: denoise 0.72]" in text
    assert "-> accepted [rung face_restore: template face_restore on attempt 4]" in text
