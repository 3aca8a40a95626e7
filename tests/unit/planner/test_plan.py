"""Plan assembly: steps with prompts, LoRAs, sizes, model and seeds; refusals for nothing to edit."""

from __future__ import annotations

import random

import pytest

from contracts.chain import ChainPlanned
from services.planner.planning import (
    CharacterProfile, Draft, EditIntent, InvalidModifier, Plan, Refusal, derive_seed, parse_modifiers, plan_request,
)
from services.planner.planning.plan import SEED_LIMIT, step_seed

EXAMPLE = "put her on a beach at sunset, sitting on a towel, in a red summer dress"


def planned(text, character, user, registry, *, seed_source=None, variant_index=0, draft=None):
    clean, modifiers = parse_modifiers(text)
    return plan_request(clean, modifiers, character, user, registry, seed_source=seed_source or random.Random(1),
                        draft=draft, variant_index=variant_index)


def test_the_example_plan(mira, sfw_user, registry):
    plan = planned(EXAMPLE + " --seed 42", mira, sfw_user, registry)
    assert isinstance(plan, Plan)
    assert [(s.index, s.kind) for s in plan.steps] == [(0, "background"), (1, "outfit"), (2, "pose")]
    background = plan.steps[0]
    assert background.prompt == ("Change the background to a beach at sunset, keep the person unchanged, "
                                 "m1ra woman, golden hour lighting")
    assert [(u.name, u.strength) for u in background.loras] == [
        ("char_mira_qwen_v1.safetensors", 0.75), ("golden_hour_light.safetensors", 0.5)]
    assert plan.steps[1].loras[0].strength == 0.85
    for step in plan.steps:
        assert (step.model, step.template, step.steps, step.cfg) == (
            "qwen_image_edit_2509_fp8_e4m3fn.safetensors", "qwen_edit", 8, 1.0)
        assert (step.width, step.height) == (1024, 1024)
        assert step.negative_prompt.startswith("blurry, deformed face")
    assert (plan.planner, plan.style, plan.backend, plan.count, plan.base_seed) == ("rules", "photoreal", "qwen", 1, 42)
    # The saga can record it as is.
    ChainPlanned(chain_id="00000000-0000-0000-0000-000000000001", steps=plan.steps, planner=plan.planner)


def test_seed_flag_fixes_the_first_step_and_derives_the_rest(mira, sfw_user, registry):
    plan = planned(EXAMPLE + " --seed 42", mira, sfw_user, registry)
    seeds = [s.seed for s in plan.steps]
    assert seeds[0] == 42
    assert seeds[1:] == [derive_seed(42, 1), derive_seed(42, 2)]
    assert len(set(seeds)) == 3 and all(seed < SEED_LIMIT for seed in seeds[1:])
    again = planned(EXAMPLE + " --seed 42", mira, sfw_user, registry, seed_source=random.Random(999))
    assert [s.seed for s in again.steps] == seeds


def test_without_seed_flag_the_seed_source_decides(mira, sfw_user, registry):
    one = planned(EXAMPLE, mira, sfw_user, registry, seed_source=random.Random(7))
    same = planned(EXAMPLE, mira, sfw_user, registry, seed_source=random.Random(7))
    other = planned(EXAMPLE, mira, sfw_user, registry, seed_source=random.Random(8))
    assert one == same
    assert one.steps[0].seed != other.steps[0].seed
    assert one.steps[0].seed == one.base_seed < SEED_LIMIT
    fixed = planned(EXAMPLE, mira, sfw_user, registry, seed_source=1234)
    assert fixed.steps[0].seed == 1234


def test_variants_get_their_own_seeds_from_one_base(mira, sfw_user, registry):
    first = planned(EXAMPLE + " --seed 42 --count 2", mira, sfw_user, registry, variant_index=0)
    second = planned(EXAMPLE + " --seed 42 --count 2", mira, sfw_user, registry, variant_index=1)
    assert first.count == second.count == 2
    assert [s.seed for s in second.steps] == [step_seed(42, 1, i) for i in range(3)]
    assert not {s.seed for s in first.steps} & {s.seed for s in second.steps}


def test_derive_seed_is_pure_and_bounded():
    assert derive_seed(2**64 - 1, 0) == 2**64 - 1
    assert derive_seed(5, 3) == derive_seed(5, 3) != derive_seed(5, 4)
    assert all(0 <= derive_seed(base, k) < SEED_LIMIT for base in (0, 1, 2**64 - 1) for k in range(1, 50))


def test_sizes_from_flags_else_from_the_model(mira, sfw_user, registry):
    plan = planned("on a beach -w 770", mira, sfw_user, registry)
    assert (plan.steps[0].width, plan.steps[0].height) == (768, 1024)


def test_style_flag_picks_model_lora_and_backend(mira, sfw_user, registry):
    plan = planned("on a beach --style anime", mira, sfw_user, registry)
    step = plan.steps[0]
    assert plan.style == "anime" and plan.backend == "qwen"
    assert [u.role for u in step.loras] == ["style", "character"]
    assert step.prompt.endswith("anime style, cel shading, m1ra woman")


def test_model_flag_overrides_the_style_model(mira, sfw_user, registry):
    plan = planned("on a beach --model flux-kontext-dev", mira, sfw_user, registry)
    step = plan.steps[0]
    assert (step.model, step.template, step.steps) == ("flux1-kontext-dev-fp8.safetensors", "flux_kontext", 20)
    assert plan.backend == "flux"
    assert step.loras == ()
    assert "LoRA 'mira-v1' left out" in plan.note


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("on a beach --model sdxl-base", "--model sdxl-base makes new pictures, a chain edits one; use an edit model"),
        ("on a beach --model sd15", "--model: unknown model 'sd15'; known: flux-dev, flux-kontext-dev, qwen-image-edit"),
        ("on a beach --style oil", "--style: unknown style 'oil'; known: anime, illustration"),
    ],
)
def test_bad_model_or_style_flags(mira, sfw_user, registry, text, message):
    with pytest.raises(InvalidModifier) as caught:
        planned(text, mira, sfw_user, registry)
    assert str(caught.value).startswith(message)


def test_an_unknown_art_style_falls_back_to_the_default_with_a_note(sfw_user, registry):
    odd = CharacterProfile(id="odd", gender="man", art_style="oil-painting")
    plan = planned("on a beach", odd, sfw_user, registry)
    assert plan.style == "photoreal"
    assert "art style 'oil-painting' is not in the registry; used 'photoreal'" in plan.note


def test_negatives_from_flag_and_from_words(mira, sfw_user, registry):
    plan = planned("in a red dress, no hat, without glasses --no blurry", mira, sfw_user, registry)
    (outfit,) = plan.steps
    assert plan.negative_prompt == "blurry"
    # Each term once: "blurry" from --no and from the model's defaults.
    assert outfit.negative_prompt == ("hat, glasses, blurry, deformed face, distorted features, extra fingers, "
                                      "extra limbs, watermark, text")
    plan_wide = planned("on a beach, no hat --no blurry", mira, sfw_user, registry)
    assert plan_wide.negative_prompt == "blurry, hat"


def test_nothing_to_edit_is_refused_with_a_hint(mira, sfw_user, registry):
    decision = planned("send me a picture of you --seed 3", mira, sfw_user, registry)
    assert isinstance(decision, Refusal)
    assert decision.rule == "planner.nothing_to_edit"
    assert "on a beach" in decision.reason


def test_a_given_draft_is_used_as_is(mira, sfw_user, registry):
    draft = Draft(intents=(EditIntent(kind="pose", description="waving", prompt="Make her wave, keep her face"),),
                  planner="llm", note="from the LLM", positive_text="waving")
    plan = planned("whatever the text says", mira, sfw_user, registry, draft=draft)
    assert plan.planner == "llm" and plan.note == "from the LLM"
    assert plan.steps[0].prompt == "Make her wave, keep her face, m1ra woman"


def test_a_draft_asking_for_more_than_allowed_is_refused(mira, sfw_user, registry):
    draft = Draft(intents=(EditIntent(kind="outfit", description="x", prompt="Put her in sexy underwear"),),
                  planner="llm")
    decision = planned("a nice outfit", mira, sfw_user, registry, draft=draft)
    assert isinstance(decision, Refusal) and decision.rule == "content_policy.words.user_limit"
