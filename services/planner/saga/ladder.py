"""The retry ladder: what a drifted step is rendered with next. Pure: the rung follows from the plan and how
many attempts of the step drifted so far, so a redelivered or replayed result decides the same rung.

A retry climbs one rung per drifted attempt, each keeping what the rungs below changed:

    reseed         a new seed, the plan's parameters (what every retry did before the ladder)
    lower_denoise  the edit keeps more of its input: denoise x0.8 (0.85 where the plan leaves the template's)
    lower_lora     the strongest "style" LoRA (else "concept") at x0.6 strength
    face_restore   after the last retry: one pass of the restore template over the best attempt so far,
                   with the reference picture as its second input

A rung that cannot change anything is skipped (a text-to-image step has no denoise to lower; denoise already
at the floor; no style or concept LoRA). Retries past the last applicable rung re-seed with the rungs' changes
kept. The re-render rungs share `max_retries` with plain re-rolls: with the default 3 they are exactly
reseed, lower_denoise, lower_lora; the restore comes on top, once, and only when a template is configured and
`max_retries` > 0 (a plan that asked for no second tries gets none).

The "character" LoRA is never lowered: it is what carries the face the check compares against, so weakening it
moves the face away from the reference. A style LoRA repaints the whole picture, faces included (an anime or
painterly style is the usual cause of a drifted face); a concept LoRA (an outfit, a pose) touches the face less.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from contracts import ChainPlanned, ChainRequested, LoraUse, PlannedStep

__all__ = [
    "DENOISE_FACTOR",
    "DENOISE_FLOOR",
    "DENOISE_WHEN_UNSET",
    "LORA_FACTOR",
    "LORA_FLOOR",
    "RungName",
    "Rung",
    "best_attempt",
    "face_mover",
    "is_restore",
    "restore_due",
    "restore_step",
    "retry_rung",
    "rung_step",
]

T = TypeVar("T")
RungName = Literal["reseed", "lower_denoise", "lower_lora", "face_restore"]

DENOISE_FACTOR = 0.8
# What the built-in edit templates run at when a plan leaves denoise unset is 0.9 to 1.0.
DENOISE_WHEN_UNSET = 0.85
# Below about half, an edit barely changes its input: the step would no longer do what the plan asked.
DENOISE_FLOOR = 0.5
LORA_FACTOR = 0.6
# A LoRA weaker than this hardly moves anything; lowering it further is not a rung worth a render.
LORA_FLOOR = 0.2
# Which LoRA roles may be lowered, the likeliest to move the face first.
_FACE_MOVERS = ("style", "concept")


@dataclass(frozen=True)
class Rung:
    """One retry: its name, and the parameters it renders with (None: the plan's own)."""

    name: RungName
    denoise: float | None = None
    loras: tuple[LoraUse, ...] | None = None


def retry_rung(step: PlannedStep, *, edits: bool, drifted: int) -> Rung:
    """The rung of the retry after the `drifted`-th drifted attempt of `step` (drifted >= 1).

    `edits`: the step edits an input picture (only then does denoise mean anything)."""
    if drifted < 1:
        raise ValueError(f"a retry follows at least one drifted attempt, got drifted={drifted}")
    rungs = _render_rungs(step, edits)
    rung = rungs[min(drifted, len(rungs)) - 1]
    # Past the top of the ladder: new seeds, with everything the rungs lowered kept lowered.
    return rung if drifted <= len(rungs) else Rung("reseed", rung.denoise, rung.loras)


def rung_step(step: PlannedStep, rung: Rung) -> PlannedStep:
    """`step` with the parameters `rung` changed."""
    return step.model_copy(update={"denoise": rung.denoise if rung.denoise is not None else step.denoise,
                                   "loras": rung.loras if rung.loras is not None else step.loras})


def restore_step(step: PlannedStep, template: str) -> PlannedStep:
    """The face-restore pass of `step`: its prompt and model (so it routes where the step rendered), the restore
    template, no LoRAs (the template has no slots for them) and the template's own low denoise."""
    return step.model_copy(update={"template": template, "loras": (), "denoise": None})


def is_restore(plan: ChainPlanned, attempt: int) -> bool:
    """Whether attempt number `attempt` is the face-restore pass: the only attempt numbered past the retries."""
    return plan.retry_ladder and plan.restore_template is not None and attempt > 1 + plan.max_retries


def restore_due(plan: ChainPlanned, request: ChainRequested, attempt: int) -> bool:
    """Whether the retries of a step ending with drifted attempt `attempt` are followed by a face restore."""
    return (plan.retry_ladder and plan.restore_template is not None and plan.max_retries > 0
            and request.reference_image is not None and not is_restore(plan, attempt))


def face_mover(loras: Sequence[LoraUse]) -> int | None:
    """Index of the LoRA the ladder lowers: the strongest style LoRA, else the strongest concept one; None: none."""
    for role in _FACE_MOVERS:
        found = [(abs(lora.strength), -i) for i, lora in enumerate(loras)
                 if lora.role == role and abs(lora.strength) > LORA_FLOOR]
        if found:
            return -max(found)[1]
    return None


def best_attempt(attempts: Sequence[T], score_of: Callable[[T], float | None]) -> T | None:
    """The attempt with the highest score (the earliest of equals); None when none was scored."""
    scored = [a for a in attempts if score_of(a) is not None]
    return max(scored, key=score_of) if scored else None


def _render_rungs(step: PlannedStep, edits: bool) -> list[Rung]:
    rungs = [Rung("reseed")]
    denoise = None
    start = step.denoise
    if edits:
        lowered = round(start * DENOISE_FACTOR, 3) if start is not None else DENOISE_WHEN_UNSET
        lowered = max(DENOISE_FLOOR, lowered)
        if start is None or lowered < start:
            denoise = lowered
            rungs.append(Rung("lower_denoise", denoise))
    index = face_mover(step.loras)
    if index is not None:
        lora = step.loras[index]
        lowered_lora = lora.model_copy(update={"strength": round(lora.strength * LORA_FACTOR, 3)})
        loras = (*step.loras[:index], lowered_lora, *step.loras[index + 1:])
        rungs.append(Rung("lower_lora", denoise, loras))
    return rungs
