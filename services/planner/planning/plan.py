"""Plan assembly: drafted intents + modifiers + character + registry -> a Plan of steps, or a Refusal.

Pure: the only randomness is the injected seed source, so the same inputs give the same plan.

Seeds: the first step of the first variant gets the base seed (`--seed N`, else one drawn from the
seed source); every other (variant, step) gets a seed derived from the base by SplitMix64, so
`--seed N` reproduces a whole plan and neighbouring steps never share noise. Generated and derived
seeds stay below 2**53, exact as JSON numbers in JavaScript clients.
Sizes: `-w/-h` where given, each missing side from the model's default.
Model: `--model`, else the style's (`--style`, else the character's art style).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from contracts.chain import PlannedStep
from services.planner.planning.decision import Draft, Plan, PlanDecision, Refusal
from services.planner.planning.errors import InvalidModifier, UnknownName
from services.planner.planning.loras import choose_loras, with_trigger_words
from services.planner.planning.modifiers import Modifiers
from services.planner.planning.content_policy import check_loras, check_words, content_limit
from services.planner.planning.profiles import CharacterProfile, UserPolicy
from services.planner.planning.registry import ModelSpec, Registry, StyleSpec
from services.planner.planning.rules import draft_by_rules

__all__ = ["NOTHING_TO_EDIT", "SEED_LIMIT", "derive_seed", "draw_seed", "joined_terms", "plan_request", "step_seed"]

SEED_LIMIT = 2**53
# Room for this many steps per variant before two variants' seeds could be derived from one offset.
_VARIANT_STRIDE = 16
NOTHING_TO_EDIT = Refusal(
    reason="nothing to change was found in the request; say where (\"on a beach\"), "
    "what to wear (\"in a red dress\") or a pose (\"sitting on a towel\")",
    rule="planner.nothing_to_edit",
)


def plan_request(
    request_text: str,
    modifiers: Modifiers,
    character: CharacterProfile,
    user_policy: UserPolicy,
    registry: Registry,
    *,
    seed_source: random.Random | int,
    draft: Draft | None = None,
    variant_index: int = 0,
) -> PlanDecision:
    """Plan `request_text` (already stripped of its modifiers), or refuse it with the rule that refused."""
    draft = draft if draft is not None else draft_by_rules(request_text, character.gender)
    notes = [draft.note] if draft.note else []
    style, model, backend = _style_and_model(modifiers, character, registry, notes)
    if not draft.intents:
        return NOTHING_TO_EDIT
    limit = content_limit(character, user_policy)
    said = [draft.positive_text, *(f"{i.description} {i.prompt}" for i in draft.intents)]
    if refusal := check_words(said, limit, registry.content_words):
        return refusal
    base_seed = modifiers.seed if modifiers.seed is not None else draw_seed(seed_source)
    plan_negative = joined_terms([modifiers.negative_prompt, *draft.negative])
    steps = []
    for index, intent in enumerate(draft.intents):
        choice = choose_loras(intent.kind, intent.description, model=model, style=style,
                              character_loras=character.loras, registry=registry)
        if refusal := check_loras(choice.specs, limit):
            return refusal
        notes.extend(note for note in choice.notes if note not in notes)
        prompt = with_trigger_words(intent.prompt, [*choice.trigger_words, *_words(model.positive_prompt)])
        steps.append(PlannedStep(
            index=index, kind=intent.kind, prompt=prompt,
            negative_prompt=joined_terms([*intent.negative, plan_negative, model.negative_prompt]),
            loras=choice.uses, width=modifiers.width or model.width, height=modifiers.height or model.height,
            seed=step_seed(base_seed, variant_index, index), model=model.checkpoint, template=model.template,
            steps=model.steps, cfg=model.cfg,
        ))
    return Plan(steps=tuple(steps), planner=draft.planner, note="; ".join(notes) or None,
                negative_prompt=plan_negative, count=modifiers.count, base_seed=base_seed,
                style=style.name, backend=backend)


def step_seed(base_seed: int, variant_index: int, step_index: int) -> int:
    """The seed of one step of one variant of a plan."""
    return derive_seed(base_seed, variant_index * _VARIANT_STRIDE + step_index)


def derive_seed(base_seed: int, offset: int) -> int:
    """`base_seed` itself for offset 0, else a well-mixed seed below SEED_LIMIT (SplitMix64)."""
    if offset == 0:
        return base_seed
    mixed = (base_seed + offset * 0x9E3779B97F4A7C15) & (2**64 - 1)
    mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (mixed ^ (mixed >> 31)) % SEED_LIMIT


def draw_seed(seed_source: random.Random | int) -> int:
    return seed_source % SEED_LIMIT if isinstance(seed_source, int) else seed_source.randrange(SEED_LIMIT)


def _style_and_model(
    modifiers: Modifiers, character: CharacterProfile, registry: Registry, notes: list[str]
) -> tuple[StyleSpec, ModelSpec, str]:
    """The style, the model and the backend tag that routes the render."""
    if modifiers.style is not None:
        style = _named(registry.style, "--style", modifiers.style)
    elif character.art_style in registry.styles:
        style = registry.style(character.art_style)
    else:
        style = registry.style(registry.default_style)
        notes.append(f"art style {character.art_style!r} is not in the registry; used {style.name!r}")
    if modifiers.model is None:
        return style, registry.model(style.model), style.backend
    model = _named(registry.model, "--model", modifiers.model)
    if model.kind != "edit":
        edit_models = sorted(name for name, spec in registry.models.items() if spec.kind == "edit")
        raise InvalidModifier("--model", f"--model {model.name} makes new pictures, a chain edits one; "
                                         f"use an edit model: {', '.join(edit_models)}")
    # The backend follows the model: a style drawn by another model is served where that model runs.
    backend = next((s.backend for s in registry.styles.values() if s.model == model.name), model.name)
    return style, model, style.backend if style.model == model.name else backend


def _named(lookup, flag: str, name: str):
    try:
        return lookup(name)
    except UnknownName as exc:
        raise InvalidModifier(flag, f"{flag}: {exc}") from None


def _words(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


def joined_terms(parts: Iterable[str]) -> str:
    """Comma-separated terms, each once (the model's default negatives often repeat the user's)."""
    terms: dict[str, str] = {}
    for part in parts:
        for term in _words(part):
            terms.setdefault(term.lower(), term)
    return ", ".join(terms.values())
