"""A request that names no character: planned as one `generate` step on a text-to-image model, and driven
by the saga without a face check (there is no reference face to hold it to)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts import (
    ChainCompleted,
    ImageRef,
    RenderCompleted,
    RenderFailed,
    RenderStep,
    RequestChain,
    ScoreFace,
    StepAccepted,
    variant_chain_id,
)
from contracts.audit import build_audit
from services.planner.planning import Planner, Plan, Refusal, UserPolicy
from services.planner.planning.plan import step_seed
from services.planner.saga.decide import PlanAccepted, StartChain, decide
from services.planner.saga.state import ChainState, Status, evolve

CHAIN = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
PICTURE = ImageRef(sha256="a" * 64, media_type="image/png", width=1024, height=1024, bytes=2048)


def t2i_request(text: str = "a lighthouse at dawn", **fields) -> RequestChain:
    return RequestChain(chain_id=CHAIN, user_id="u-bot/alice", request_text=text, mode="t2i", **fields)


def plan_text(registry, text: str, *, user=UserPolicy(), seed: int = 7, variant: int = 0):
    return Planner(registry).plan_text(text, user, seed_source=random.Random(seed), variant_index=variant)


# -- the contract ---------------------------------------------------------------------------------


def test_a_text_to_image_request_has_no_character_and_an_edit_needs_one() -> None:
    assert t2i_request().character_id is None and t2i_request().reference_image is None
    with pytest.raises(ValidationError, match="no character, reference, input image or parent"):
        t2i_request(character_id="luna")
    with pytest.raises(ValidationError, match="an edit chain needs character_id and reference_image"):
        RequestChain(chain_id=CHAIN, user_id="u1", request_text="on a beach", character_id="luna")


def test_a_step_is_accepted_unscored_only_when_it_says_so() -> None:
    unscored = StepAccepted(chain_id=CHAIN, step=0, attempt=1, image=PICTURE, decision="unscored")
    assert unscored.score is None
    with pytest.raises(ValidationError, match="only an \"unscored\" one has none"):
        StepAccepted(chain_id=CHAIN, step=0, attempt=1, image=PICTURE)
    with pytest.raises(ValidationError, match="only an \"unscored\" one has none"):
        StepAccepted(chain_id=CHAIN, step=0, attempt=1, image=PICTURE, score=50.0, decision="unscored")


def test_the_chains_of_a_batch_are_named_from_its_id_alike_everywhere() -> None:
    assert variant_chain_id(CHAIN, 0) == CHAIN
    assert variant_chain_id(CHAIN, 1) == uuid.uuid5(CHAIN, "variant-1") != variant_chain_id(CHAIN, 2)


# -- planning -------------------------------------------------------------------------------------


def test_the_text_is_the_prompt_of_one_generate_step_on_the_first_text_to_image_model(registry) -> None:
    plan = plan_text(registry, "a lighthouse at dawn -w 768 -h 512 --seed 42 --no fog")
    assert isinstance(plan, Plan)
    (step,) = plan.steps
    sdxl = registry.model("sdxl-base")
    assert (step.kind, step.template, step.model) == ("generate", "sdxl_t2i", sdxl.checkpoint)
    assert step.prompt == f"a lighthouse at dawn, {sdxl.positive_prompt}"
    assert step.negative_prompt.split(", ")[0] == "fog" and sdxl.negative_prompt in step.negative_prompt
    assert (step.width, step.height, step.seed, step.loras) == (768, 512, 42, ())
    assert plan.style is None and plan.count == 1 and "no face check" in plan.note


def test_model_flag_picks_another_text_to_image_model_and_count_fans_out(registry) -> None:
    first = plan_text(registry, "a red fox -m flux-dev -c 2 -s 9")
    second = plan_text(registry, "a red fox -m flux-dev -c 2 -s 9", variant=1)
    assert first.steps[0].template == "flux_t2i" and first.count == 2
    assert (first.steps[0].seed, second.steps[0].seed) == (9, step_seed(9, 1, 0))


@pytest.mark.parametrize(
    ("text", "rule", "says"),
    [
        ("a fox --model qwen-image-edit", "modifier.model", "edits a picture, and this request names no character"),
        ("a fox --model sd15", "modifier.model", "unknown model 'sd15'"),
        ("a fox --style anime", "modifier.style", "name the style in the text"),
        ("--seed 4", "planner.nothing_to_draw", "says nothing to draw"),
        ("a fox --width 9", "modifier.width", "between 64 and 2048"),
    ],
)
def test_what_cannot_be_drawn_is_refused_with_its_rule(registry, text, rule, says) -> None:
    refusal = plan_text(registry, text)
    assert isinstance(refusal, Refusal) and refusal.rule == rule and says in refusal.reason


def test_words_over_the_users_bound_are_refused_but_negated_ones_are_not(registry) -> None:
    word = registry.content_words.nsfw[0]
    refused = plan_text(registry, f"a {word} on a sofa")
    assert isinstance(refused, Refusal) and refused.rule == "content_policy.words.user_limit"
    assert isinstance(plan_text(registry, f"a sofa, no {word}"), Plan)
    assert isinstance(plan_text(registry, f"a {word} on a sofa", user=UserPolicy(max_rating="nsfw")), Plan)


# -- the saga -------------------------------------------------------------------------------------


def started(plan: Plan) -> tuple[ChainState, list]:
    decision = decide(ChainState(), StartChain(t2i_request(), PlanAccepted(plan.steps, plan.planner, plan.note)))
    state = ChainState()
    for event in decision.events:
        state = evolve(state, event)
    return state, [*decision.events, *decision.commands]


def test_the_one_step_renders_without_an_input_and_is_kept_without_a_face_check(registry) -> None:
    state, first = started(plan_text(registry, "a lighthouse at dawn"))
    render = first[-1]
    assert isinstance(render, RenderStep) and render.input_image is None and render.style is None
    assert [m.type for m in first[:-1]] == ["chain.requested", "chain.planned", "chain.step_requested"]
    done = decide(state, RenderCompleted(chain_id=CHAIN, step=0, attempt=1, image=PICTURE, workflow_hash="h",
                                         backend="b", engine="comfyui"))
    assert [e.type for e in done.events] == ["chain.step_rendered", "chain.step_accepted", "chain.completed"]
    assert not any(isinstance(c, ScoreFace) for c in done.commands) and not done.commands
    accepted, completed = done.events[1], done.events[2]
    assert (accepted.decision, accepted.score) == ("unscored", None)
    assert isinstance(completed, ChainCompleted) and completed.final_image == PICTURE
    for event in done.events:
        state = evolve(state, event)
    assert state.status is Status.COMPLETED


def test_a_lost_render_is_asked_again_with_the_same_seed_and_still_no_input(registry) -> None:
    state, first = started(plan_text(registry, "a lighthouse --seed 5"))
    again = decide(state, RenderFailed(chain_id=CHAIN, step=0, attempt=1, reason="gone", error_kind="unreachable"))
    (retry,) = again.commands
    assert isinstance(retry, RenderStep) and (retry.attempt, retry.seed, retry.input_image) == (2, 5, None)


def test_the_audit_says_the_step_was_not_face_checked(registry) -> None:
    state, first = started(plan_text(registry, "a lighthouse"))
    done = decide(state, RenderCompleted(chain_id=CHAIN, step=0, attempt=1, image=PICTURE, workflow_hash="h",
                                         backend="b", engine="draft"))
    now = datetime.now(UTC)
    audit = build_audit(str(CHAIN), [(e, now) for e in [*first[:-1], *done.events]])
    (attempt,) = audit.steps[0].attempts
    assert attempt.decision == "accepted (not scored: text-to-image)" and attempt.input_image is None
    assert audit.status == "completed" and audit.score is None and audit.final_image == PICTURE
