"""Which LoRAs a step stacks, in which order and at which strength, and the trigger words they need.

Reading of "character strength scales with how many LoRAs are stacked": the count is the whole stack
of the step (style, character and concept LoRAs together), because every stacked LoRA shifts the
same weights; the more there are, the more a full-strength identity LoRA fights them and bends the
style, so it is dialed back: 0.85 alone, 0.75 in a stack of 2, 0.65 in a stack of 3 or more. Other
LoRAs keep their registry default strength. A `LoraUse` carries the LoRA's file name, so a plan says
exactly what ComfyUI loads, whatever the registry holds later.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.chain import LoraUse
from services.planner.planning.decision import EditKind
from services.planner.planning.errors import LoraStackTooLarge, RegistryError
from services.planner.planning.registry import LoraSpec, ModelSpec, Registry, StyleSpec

__all__ = [
    "MAX_LORAS_PER_STEP", "LoraChoice", "character_strength", "choose_loras", "stack_loras", "with_trigger_words",
]

MAX_LORAS_PER_STEP = 10
_STACK_ORDER = {"style": 0, "character": 1, "concept": 2, "clothing": 2, "pose": 2}
_KEEP_ORDER = {"character": 0, "style": 1}
_ROLE = {"style": "style", "character": "character", "concept": "concept", "clothing": "concept", "pose": "concept"}
# Which steps a keyword-selected LoRA may join: a clothing LoRA on a pose edit would repaint the clothes.
_KINDS = {"clothing": {"outfit"}, "pose": {"pose"}, "concept": {"background", "outfit", "pose"}}


@dataclass(frozen=True)
class LoraChoice:
    """The stack of one step, the registry entries behind it (for the policy), and notes."""

    uses: tuple[LoraUse, ...]
    specs: tuple[LoraSpec, ...]
    trigger_words: tuple[str, ...]
    notes: tuple[str, ...] = ()


def character_strength(stack_size: int) -> float:
    """Strength of a character LoRA in a stack of `stack_size` LoRAs."""
    if stack_size <= 1:
        return 0.85
    return 0.75 if stack_size == 2 else 0.65


def choose_loras(
    kind: EditKind, description: str, *, model: ModelSpec, style: StyleSpec, character_loras: Sequence[str],
    registry: Registry,
) -> LoraChoice:
    """The style LoRA, the character's LoRAs and the LoRAs whose keywords the step's words contain."""
    picked: list[LoraSpec] = []
    notes: list[str] = []
    if style.lora is not None:
        picked.append(registry.lora(style.lora))
    for name in character_loras:
        lora = registry.lora(name)
        if lora.purpose != "character":
            raise RegistryError(f"character LoRA {name!r} has purpose {lora.purpose!r}, expected 'character'")
        picked.append(lora)
    for lora in registry.loras.values():
        if lora.purpose in _KINDS and kind in _KINDS[lora.purpose] and _mentions(description, lora.keywords):
            picked.append(lora)
    usable = []
    for lora in picked:
        if lora.models and model.name not in lora.models:
            if lora.purpose in ("style", "character"):
                notes.append(f"LoRA {lora.name!r} left out: made for {', '.join(lora.models)}, not {model.name}")
            continue
        usable.append(lora)
    usable = list(dict.fromkeys(usable))
    if len(usable) > model.max_loras:
        # The template has no more slots: the face (character) first, then the look (style), then the rest.
        kept = sorted(usable, key=lambda lora: _KEEP_ORDER.get(lora.purpose, 2))[:model.max_loras]
        left = [lora.name for lora in usable if lora not in kept]
        notes.append(f"LoRA(s) {', '.join(left)} left out: {model.name}'s template takes at most "
                     f"{model.max_loras}")
        usable = [lora for lora in usable if lora in kept]
    ordered = tuple(sorted(usable, key=lambda lora: _STACK_ORDER[lora.purpose]))
    triggers = tuple(dict.fromkeys(word for lora in ordered for word in lora.trigger_words))
    return LoraChoice(stack_loras(ordered), ordered, triggers, tuple(notes))


def stack_loras(loras: Sequence[LoraSpec]) -> tuple[LoraUse, ...]:
    """LoRA uses in stack order (style first), character strengths scaled by the stack's size."""
    if len(loras) > MAX_LORAS_PER_STEP:
        raise LoraStackTooLarge(
            f"a step may stack at most {MAX_LORAS_PER_STEP} LoRAs, this one would stack {len(loras)}: "
            + ", ".join(lora.name for lora in loras)
        )
    ordered = sorted(loras, key=lambda lora: _STACK_ORDER[lora.purpose])
    return tuple(
        LoraUse(
            name=lora.file,
            strength=character_strength(len(ordered)) if lora.purpose == "character" else lora.default_strength,
            role=_ROLE[lora.purpose],
        )
        for lora in ordered
    )


def with_trigger_words(prompt: str, trigger_words: Sequence[str]) -> str:
    """The prompt with the trigger words it lacks appended after it."""
    # After, not before: the edit model reads the instruction first; triggers only need to be present.
    missing = [word for word in trigger_words if word.lower() not in prompt.lower()]
    return ", ".join([prompt, *missing])


def _mentions(text: str, keywords: Sequence[str]) -> bool:
    return any(re.search(rf"(?<![\w-]){re.escape(word)}(?:e?s)?(?![\w-])", text, re.IGNORECASE) for word in keywords)
