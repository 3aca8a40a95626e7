"""Plans a text-to-image request (no character): one `generate` step on a text-to-image model. Pure.

There is no reference face, so nothing is edited and nothing is face-checked: the request text (without
its modifiers) is the prompt. The model is `--model` when it names a text-to-image model, else the first
text-to-image model of models.json. `--style` is refused: a style names an edit model and its LoRA, which
a text-to-image model cannot use (say the style in the text instead). No LoRA is chosen: the registry's
LoRAs are trained for the edit models. Seeds follow the chain rules (`plan.step_seed`), so `--seed N`
reproduces the picture and the variants of `--count N` differ.
"""

from __future__ import annotations

import random

from contracts.chain import PlannedStep
from services.planner.planning.content_policy import ContentLimit, check_words
from services.planner.planning.decision import Plan, PlanDecision, Refusal
from services.planner.planning.errors import InvalidModifier, UnknownName
from services.planner.planning.modifiers import Modifiers
from services.planner.planning.plan import draw_seed, joined_terms, step_seed
from services.planner.planning.profiles import UserPolicy
from services.planner.planning.registry import ModelSpec, Registry
from services.planner.planning.rules import draft_by_rules

__all__ = ["NOTHING_TO_DRAW", "T2I_NOTE", "plan_text_to_image", "text_to_image_model"]

NOTHING_TO_DRAW = Refusal(reason="the request says nothing to draw: describe the picture (\"a lighthouse at dawn\")",
                          rule="planner.nothing_to_draw")
T2I_NOTE = "text-to-image: the request is the prompt; no reference face, so no face check"


def plan_text_to_image(
    request_text: str,
    modifiers: Modifiers,
    user_policy: UserPolicy,
    registry: Registry,
    *,
    seed_source: random.Random | int,
    variant_index: int = 0,
) -> PlanDecision:
    """One `generate` step drawing `request_text` (already stripped of its modifiers), or a refusal."""
    if modifiers.style is not None:
        raise InvalidModifier("--style", "--style applies to a character's chain of edits; a text-to-image "
                                         "request draws what its text says, so name the style in the text")
    model = text_to_image_model(registry, modifiers.model)
    if not request_text:
        return NOTHING_TO_DRAW
    # Negated words ("no hat") do not count against the bound, as in a chain.
    said = draft_by_rules(request_text, "other").positive_text or request_text
    if refusal := check_words([said], ContentLimit(user_policy.max_rating, "user"), registry.content_words):
        return refusal
    base_seed = modifiers.seed if modifiers.seed is not None else draw_seed(seed_source)
    prompt = f"{request_text}, {model.positive_prompt}" if model.positive_prompt else request_text
    step = PlannedStep(
        index=0, kind="generate", prompt=prompt,
        negative_prompt=joined_terms([modifiers.negative_prompt, model.negative_prompt]),
        width=modifiers.width or model.width, height=modifiers.height or model.height,
        seed=step_seed(base_seed, variant_index, 0), model=model.checkpoint, template=model.template,
        steps=model.steps, cfg=model.cfg,
    )
    return Plan(steps=(step,), planner="rules", note=T2I_NOTE, negative_prompt=modifiers.negative_prompt,
                count=modifiers.count, base_seed=base_seed, style=None, backend=model.name)


def text_to_image_model(registry: Registry, name: str | None) -> ModelSpec:
    """The model `--model` names (it must make pictures from text), else the registry's first such model."""
    drawing = [spec for spec in registry.models.values() if spec.kind == "t2i"]
    if name is None:
        if not drawing:
            raise UnknownName("text-to-image model", "(none)", [])
        return drawing[0]
    try:
        model = registry.model(name)
    except UnknownName as exc:
        raise InvalidModifier("--model", f"--model: {exc}") from None
    if model.kind != "t2i":
        names = ", ".join(spec.name for spec in drawing) or "none"
        raise InvalidModifier("--model", f"--model {model.name} edits a picture, and this request names no "
                                         f"character to edit; use a text-to-image model: {names}")
    return model
