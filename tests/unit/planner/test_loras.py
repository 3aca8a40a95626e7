"""LoRA stacks: style first, character strength by stack size, at most 10, trigger words in the prompt."""

from __future__ import annotations

import pytest

from services.planner.planning import MAX_LORAS_PER_STEP, LoraStackTooLarge, RegistryError, choose_loras, stack_loras
from services.planner.planning.loras import character_strength, with_trigger_words
from tests.unit.planner.conftest import lora_entry, registry_with


@pytest.mark.parametrize(("size", "strength"), [(1, 0.85), (2, 0.75), (3, 0.65), (4, 0.65), (10, 0.65)])
def test_character_strength_falls_as_the_stack_grows(size, strength):
    assert character_strength(size) == strength


def _specs(registry, *names):
    return [registry.lora(name) for name in names]


def test_a_character_lora_alone_gets_085(registry):
    (use,) = stack_loras(_specs(registry, "mira-v1"))
    assert (use.name, use.strength, use.role) == ("char_mira_qwen_v1.safetensors", 0.85, "character")


def test_style_lora_comes_first_and_only_character_strengths_scale(registry):
    uses = stack_loras(_specs(registry, "golden-hour-light", "mira-v1", "anime-lines"))
    assert [(u.name, u.strength, u.role) for u in uses] == [
        ("anime_lines_qwen_v1.safetensors", 0.8, "style"),
        ("char_mira_qwen_v1.safetensors", 0.65, "character"),
        ("golden_hour_light.safetensors", 0.5, "concept"),
    ]
    two = stack_loras(_specs(registry, "mira-v1", "anime-lines"))
    assert [(u.role, u.strength) for u in two] == [("style", 0.8), ("character", 0.75)]


def test_two_character_loras_share_the_stack_strength(registry):
    uses = stack_loras(_specs(registry, "mira-v1", "kenji-v1"))
    assert [u.strength for u in uses] == [0.75, 0.75]


def test_pose_and_clothing_loras_ride_as_concepts(registry):
    uses = stack_loras(_specs(registry, "pirate-costume", "dynamic-action"))
    assert {u.role for u in uses} == {"concept"}


def test_ten_loras_stack_and_eleven_are_refused():
    extra = [lora_entry(f"concept-{i}", "concept") for i in range(11)]
    registry = registry_with(*extra)
    specs = [registry.lora(f"concept-{i}") for i in range(11)]
    assert len(stack_loras(specs[:MAX_LORAS_PER_STEP])) == 10
    with pytest.raises(LoraStackTooLarge, match="at most 10 LoRAs, this one would stack 11: concept-0, concept-1"):
        stack_loras(specs)


def _choose(registry, kind, description, *, style="photoreal", model="qwen-image-edit", character=("mira-v1",)):
    return choose_loras(kind, description, model=registry.model(model), style=registry.style(style),
                        character_loras=character, registry=registry)


def test_keyword_loras_join_only_steps_of_their_kind(registry):
    outfit = _choose(registry, "outfit", "a pirate costume")
    assert [s.name for s in outfit.specs] == ["mira-v1", "pirate-costume"]
    assert outfit.trigger_words == ("m1ra woman", "pirate outfit")
    pose = _choose(registry, "pose", "waving like a pirate")
    assert [s.name for s in pose.specs] == ["mira-v1"]
    background = _choose(registry, "background", "a beach at sunset")
    assert [s.name for s in background.specs] == ["mira-v1", "golden-hour-light"]
    assert [u.strength for u in background.uses] == [0.75, 0.5]


def test_style_lora_and_character_lora_on_every_step(registry):
    choice = _choose(registry, "pose", "jumping", style="anime")
    assert [s.name for s in choice.specs] == ["anime-lines", "mira-v1", "dynamic-action"]
    assert [u.strength for u in choice.uses] == [0.8, 0.65, 0.6]


def test_loras_made_for_another_model_are_left_out_with_a_note(registry):
    choice = _choose(registry, "outfit", "a pirate costume", style="illustration", model="flux-kontext-dev")
    assert choice.specs == ()
    assert choice.notes == ("LoRA 'mira-v1' left out: made for qwen-image-edit, not flux-kontext-dev",)


def test_a_stack_bigger_than_the_models_template_keeps_the_face_then_the_style(registry):
    narrow = registry.model("qwen-image-edit").model_copy(update={"max_loras": 2})
    choice = choose_loras("pose", "jumping", model=narrow, style=registry.style("anime"),
                          character_loras=("mira-v1",), registry=registry)
    assert [s.name for s in choice.specs] == ["anime-lines", "mira-v1"]
    assert choice.notes == ("LoRA(s) dynamic-action left out: qwen-image-edit's template takes at most 2",)
    assert [u.strength for u in choice.uses] == [0.8, 0.75]


def test_a_character_lora_must_be_a_character_lora(registry):
    with pytest.raises(RegistryError, match="character LoRA 'anime-lines' has purpose 'style'"):
        _choose(registry, "pose", "waving", character=("anime-lines",))


def test_trigger_words_are_appended_once():
    prompt = "Change her outfit to a pirate outfit, keep her face unchanged"
    assert with_trigger_words(prompt, ["pirate outfit", "m1ra woman"]) == f"{prompt}, m1ra woman"
    assert with_trigger_words("Change x", []) == "Change x"
