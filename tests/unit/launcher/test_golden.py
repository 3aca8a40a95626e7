"""The pure parts of `likeness golden`: a chain's events folded into a pin, and a re-render compared with it."""

from __future__ import annotations

import io
import re
from uuid import UUID

import pytest
from PIL import Image

from contracts import (
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainRequested,
    ImageRef,
    LoraUse,
    PlannedStep,
    StepAccepted,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
)
from services.launcher.golden_compare import StepCheck, Tolerance, exit_code, image_distance, regressions, render_table
from services.launcher.golden_pins import GoldenError, latest_pins, parse_swaps, pin_chain, pin_event_id, swapped
from tests.faces import face_of, same_face_variant

CHAIN = UUID("00000000-0000-4000-8000-000000000001")


def ref(n: int) -> ImageRef:
    return ImageRef(sha256=f"{n:064x}", media_type="image/png", width=256, height=256, bytes=1000 + n)


def step(index: int, seed: int) -> PlannedStep:
    return PlannedStep(index=index, kind="background", prompt=f"edit {index}", width=832, height=1216, seed=seed,
                       model="qwen-image-edit", template="qwen_edit", steps=8, cfg=1.0, denoise=0.9)


def completed_chain() -> list:
    """Two steps; step 1 drifted on attempt 1 and was accepted on attempt 2 with a new seed."""
    common = {"chain_id": CHAIN}
    return [
        ChainRequested(**common, character_id="mira", user_id="u", request_text="beach", reference_image=ref(1)),
        ChainPlanned(**common, steps=(step(0, 11), step(1, 22)), planner="rules", threshold=40.0, style="photo"),
        StepRequested(**common, step=0, attempt=1, seed=11, input_image=ref(1)),
        StepRendered(**common, step=0, attempt=1, image=ref(2), workflow_hash="h0", backend="b", engine="comfyui"),
        StepScored(**common, step=0, attempt=1, score=70.0, faces_found=1, threshold=40.0),
        StepAccepted(**common, step=0, attempt=1, image=ref(2), score=70.0),
        StepRequested(**common, step=1, attempt=1, seed=22, input_image=ref(2)),
        StepRendered(**common, step=1, attempt=1, image=ref(3), workflow_hash="h1a", backend="b", engine="comfyui"),
        StepScored(**common, step=1, attempt=1, score=10.0, faces_found=1, threshold=40.0),
        StepRetried(**common, step=1, next_attempt=2, new_seed=99, previous_score=10.0, reason="drifted"),
        StepRequested(**common, step=1, attempt=2, seed=99, input_image=ref(2)),
        StepRendered(**common, step=1, attempt=2, image=ref(4), workflow_hash="h1b", backend="b", engine="comfyui"),
        StepScored(**common, step=1, attempt=2, score=55.0, faces_found=1, threshold=40.0),
        StepAccepted(**common, step=1, attempt=2, image=ref(4), score=55.0),
        ChainCompleted(**common, final_image=ref(4), step_images=(ref(2), ref(4))),
    ]


# Pins


def test_a_pin_holds_each_accepted_attempt_with_its_own_seed_input_image_and_hash() -> None:
    pin = pin_chain(CHAIN, completed_chain(), note="before the upgrade")

    assert (pin.character_id, pin.reference_image, pin.style, pin.threshold) == ("mira", ref(1), "photo", 40.0)
    assert [(s.attempt, s.params.seed, s.input_image, s.image, s.score, s.workflow_hash) for s in pin.steps] == [
        (1, 11, ref(1), ref(2), 70.0, "h0"), (2, 99, ref(2), ref(4), 55.0, "h1b")]
    # Everything else a RenderStep carries comes from the plan.
    assert pin.steps[1].params == step(1, 99)
    assert pin.note == "before the upgrade"


@pytest.mark.parametrize(("events", "says"), [
    ([], "no chain"),
    (completed_chain()[:-1], "not completed (still running)"),
    ([*completed_chain()[:-1], ChainFailed(chain_id=CHAIN, step=1, reason="drifted")], "not completed (failed)"),
    ([e for e in completed_chain() if not (isinstance(e, StepRendered) and e.attempt == 2)], "lacks its render"),
])
def test_only_a_completed_chain_with_a_full_record_is_pinned(events: list, says: str) -> None:
    with pytest.raises(GoldenError, match=re.escape(says)):
        pin_chain(CHAIN, events)


class RequestWithDenoise(StepRequested):
    """A request that sets a render parameter of its own (as a retry at a lower denoise would)."""

    denoise: float | None = None


def test_a_render_parameter_the_attempt_set_for_itself_is_pinned_over_the_plan() -> None:
    events = [RequestWithDenoise(**e.model_dump(exclude={"type", "version"}), denoise=0.6)
              if isinstance(e, StepRequested) and (e.step, e.attempt) == (1, 2) else e for e in completed_chain()]

    pin = pin_chain(CHAIN, events)

    assert [(s.params.seed, s.params.denoise) for s in pin.steps] == [(11, 0.9), (99, 0.6)]


def on_rung(**rung) -> list:
    """`completed_chain` with step 1's accepted attempt 2 rendered on a retry-ladder rung."""
    return [e.model_copy(update=rung) if isinstance(e, StepRetried) else e for e in completed_chain()]


def test_a_step_accepted_on_a_ladder_rung_is_pinned_with_what_the_rung_changed() -> None:
    lowered = (LoraUse(name="film.safetensors", strength=0.36, role="style"),)

    pin = pin_chain(CHAIN, on_rung(rung="lower_lora", denoise=0.72, loras=lowered))

    assert (pin.steps[1].params.denoise, pin.steps[1].params.loras, pin.steps[1].with_reference) == (0.72, lowered,
                                                                                                     False)
    assert pin.steps[0].params == step(0, 11)


def test_a_step_accepted_on_the_face_restore_pass_is_pinned_with_its_template_and_the_reference() -> None:
    pin = pin_chain(CHAIN, on_rung(rung="face_restore", template="face_restore", restores_attempt=1))

    restored = pin.steps[1]
    assert (restored.params.template, restored.params.loras, restored.params.denoise) == ("face_restore", (), None)
    assert restored.with_reference and not pin.steps[0].with_reference


def test_a_text_to_image_chain_is_pinned_unscored_and_without_input() -> None:
    drawn = PlannedStep(index=0, kind="generate", prompt="a lighthouse", width=1024, height=1024, seed=5,
                        model="sdxl-base", template="sdxl_t2i", steps=30, cfg=5.0)
    events = [
        ChainRequested(chain_id=CHAIN, user_id="bot", request_text="a lighthouse", mode="t2i"),
        ChainPlanned(chain_id=CHAIN, steps=(drawn,), planner="rules"),
        StepRequested(chain_id=CHAIN, step=0, attempt=1, seed=5),
        StepRendered(chain_id=CHAIN, step=0, attempt=1, image=ref(7), workflow_hash="t", backend="b", engine="draft"),
        StepAccepted(chain_id=CHAIN, step=0, attempt=1, image=ref(7), decision="unscored"),
        ChainCompleted(chain_id=CHAIN, final_image=ref(7), step_images=(ref(7),)),
    ]

    pin = pin_chain(CHAIN, events)

    assert (pin.reference_image, pin.character_id) == (None, None)
    assert [(s.input_image, s.score, s.image, s.engine) for s in pin.steps] == [(None, None, ref(7), "draft")]


def test_a_pin_retried_at_one_version_is_one_event_and_the_latest_pin_of_a_chain_wins() -> None:
    first = pin_chain(CHAIN, completed_chain())
    again = pin_chain(CHAIN, completed_chain())
    noted = pin_chain(CHAIN, completed_chain(), note="re-pinned")

    assert pin_event_id(first, 3) == pin_event_id(again, 3) != pin_event_id(noted, 3)
    # The first pin recorded again after `noted` is a new event, and the latest again.
    assert pin_event_id(first, 3) != pin_event_id(first, 4)
    assert latest_pins([first, noted]) == {CHAIN: noted}
    assert latest_pins([first, noted, again]) == {CHAIN: first}


# Swaps


def test_swaps_rename_the_model_template_and_loras_of_a_pinned_step() -> None:
    params = step(0, 11).model_copy(update={"loras": (LoraUse(name="anime", strength=0.7, role="style"),
                                                      LoraUse(name="mira", strength=1.0, role="character"))})
    swaps = parse_swaps(["model:qwen-image-edit=qwen-2", "template:qwen_edit=qwen_edit_v2", "lora:anime=anime_v3"])

    new = swapped(params, swaps)

    assert (new.model, new.template, new.seed, new.prompt) == ("qwen-2", "qwen_edit_v2", 11, "edit 0")
    assert new.loras == (LoraUse(name="anime_v3", strength=0.7, role="style"),
                         LoraUse(name="mira", strength=1.0, role="character"))
    assert swapped(params, parse_swaps([])) == params


@pytest.mark.parametrize(("given", "says"), [
    (["checkpoint:a=b"], "expected KIND:OLD=NEW with KIND one of model, template, lora"),
    (["model:a="], "expected KIND:OLD=NEW"),
    (["model:a=b", "model:a=c"], "model 'a' is swapped for both 'b' and 'c'"),
])
def test_a_swap_that_cannot_be_meant_is_refused(given: list[str], says: str) -> None:
    with pytest.raises(GoldenError, match=re.escape(says)):
        parse_swaps(given)


# Image distance


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_image_distance_is_zero_for_the_same_picture_and_full_for_black_against_white() -> None:
    black, white = Image.new("RGB", (100, 80), (0, 0, 0)), Image.new("RGB", (30, 30), (255, 255, 255))

    assert image_distance(face_of(0), face_of(0)) == 0.0
    assert image_distance(png(black), png(white)) == 100.0
    assert image_distance(png(Image.new("RGB", (64, 64), (51, 51, 51))), png(black)) == pytest.approx(20.0)


def test_re_encoding_moves_a_picture_less_than_another_face_does() -> None:
    jpeg_copy = image_distance(face_of(0), same_face_variant(0, "jpeg"))
    someone_else = image_distance(face_of(0), face_of(3))

    assert jpeg_copy < Tolerance().max_distance < someone_else


def test_image_distance_says_which_picture_cannot_be_read() -> None:
    with pytest.raises(ValueError, match="the second image cannot be read"):
        image_distance(face_of(0), b"not a picture")


# Verdicts


def check(**changes) -> StepCheck:
    fields = {"chain_id": CHAIN, "step": 1, "template": "qwen_edit", "threshold": 40.0, "pinned_score": 60.0,
              "pinned_hash": "a" * 64, "new_score": 60.0, "distance": 0.0, "new_hash": "a" * 64}
    return StepCheck(**(fields | changes))


@pytest.mark.parametrize(("changes", "reasons"), [
    ({}, []),
    ({"new_score": 55.0, "distance": 8.0}, []),  # at the tolerance is still within it
    ({"new_score": 54.9}, ["score dropped 5.1 points (> 5)"]),
    ({"new_score": 0.0, "pinned_score": 30.0, "threshold": 20.0, "face_note": "no face found"},
     ["score dropped 30.0 points (> 5): no face found", "score 0.0 is below the chain's threshold 20"]),
    ({"new_score": 75.0, "distance": 8.5}, ["image distance 8.5 (> 8)"]),
    ({"pinned_score": 42.0, "new_score": 39.0}, ["score 39.0 is below the chain's threshold 40"]),
    ({"failure": "render failed (validation): no template 'x'"}, ["render failed (validation): no template 'x'"]),
    ({"new_hash": "b" * 64}, []),  # a changed workflow is what an upgrade is: reported, not failed
])
def test_a_step_regresses_past_either_tolerance_or_below_the_threshold(changes: dict, reasons: list[str]) -> None:
    assert regressions(check(**changes), Tolerance(max_score_drop=5.0, max_distance=8.0)) == reasons


def test_the_new_score_is_held_to_the_pinned_picture_scored_by_todays_face_check() -> None:
    recalibrated = check(pinned_score=60.0, pinned_now=50.0, new_score=49.0)
    worse_render = check(pinned_score=60.0, pinned_now=50.0, new_score=44.0)

    assert regressions(recalibrated, Tolerance()) == []  # 11 below the pin as recorded, 1 below the same scorer's
    assert regressions(worse_render, Tolerance()) == ["score dropped 6.0 points (> 5)"]
    table = render_table([recalibrated], Tolerance())
    assert table.splitlines()[1].split()[3:7] == ["50.0", "->", "49.0", "-1.0"]
    assert (f"chain {CHAIN} step 2: the pinned picture scores 50.0 today, 60.0 when pinned (the face check "
            "changed); the new picture is held to 50.0") in table
    assert "face check changed" not in render_table([check(pinned_now=60.0)], Tolerance())


def test_exit_code_is_1_for_a_regression_and_2_when_a_step_could_not_be_checked() -> None:
    tolerance = Tolerance()
    assert exit_code([check(), check(step=0)], tolerance) == 0
    assert exit_code([check(), check(new_score=10.0)], tolerance) == 1
    assert exit_code([check(new_score=10.0), check(unchecked="no answer from the renderer")], tolerance) == 2


def test_the_table_names_each_regressed_step_and_each_changed_workflow() -> None:
    table = render_table([check(step=0), check(new_score=20.0, distance=31.25, new_hash="b" * 64)], Tolerance())
    lines = table.splitlines()

    assert lines[0].split() == ["CHAIN", "STEP", "TEMPLATE", "SCORE", "DELTA", "DISTANCE", "WORKFLOW", "RESULT"]
    assert lines[1].split() == ["00000000", "1", "qwen_edit", "60.0", "->", "60.0", "+0.0", "0.0", "same", "ok"]
    assert lines[2].split() == ["00000000", "2", "qwen_edit", "60.0", "->", "20.0", "-40.0", "31.2", "changed",
                                "REGRESSED"]
    assert f"chain {CHAIN} step 2: score dropped 40.0 points (> 5)" in lines
    assert f"chain {CHAIN} step 2: score 20.0 is below the chain's threshold 40" in lines
    assert f"chain {CHAIN} step 2: image distance 31.2 (> 8)" in lines
    assert f"chain {CHAIN} step 2: workflow aaaaaaaaaaaa -> bbbbbbbbbbbb (template 'qwen_edit' or its bindings " \
           "changed)" in lines


def test_tolerances_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="tolerances"):
        Tolerance(max_distance=120.0)
