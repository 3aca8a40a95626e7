"""Pure: a completed chain's events folded into a pin (`GoldenChainRecorded`), and the latest pin of each chain.

No I/O here: `services.launcher.golden` reads the log and appends what these functions build.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import TypeVar
from uuid import UUID, uuid5

from contracts import (
    ChainCompleted,
    ChainPlanned,
    ChainRequested,
    GoldenChainRecorded,
    GoldenStep,
    Message,
    PlannedStep,
    StepAccepted,
    StepRendered,
    StepRequested,
    StepRetried,
)
from contracts.chain import CHAIN_ENDS

__all__ = ["SWAPPABLE", "GoldenError", "latest_pins", "parse_swaps", "pin_chain", "pin_event_id", "swapped"]

# What `verify --swap KIND:OLD=NEW` may replace in the pinned steps: a new checkpoint, template or LoRA file
# under a new name is tested against pins made with the old one.
SWAPPABLE = ("model", "template", "lora")

M = TypeVar("M", bound=Message)

# Names the ids of pin events (see `pin_event_id`).
_PIN_NAMESPACE = UUID("6c1a0a4e-3f0b-4e55-9d8e-60f1d3a0c0de")


class GoldenError(Exception):
    """A chain cannot be pinned (or a pin cannot be checked); the message says why, for the user."""


def pin_chain(chain_id: UUID, messages: Sequence[Message], *, recorded_by: str = "cli",
              note: str | None = None) -> GoldenChainRecorded:
    """The pin of a completed chain from its stream's messages, oldest first; GoldenError if it cannot be one."""
    if not messages:
        raise GoldenError(f"no chain {chain_id} in the log")
    request = _only(messages, ChainRequested)
    plan = _only(messages, ChainPlanned)
    ended = next((m for m in messages if m.type in CHAIN_ENDS), None)
    if request is None or plan is None or not isinstance(ended, ChainCompleted):
        status = "still running" if ended is None else ended.type.removeprefix("chain.")
        raise GoldenError(f"chain {chain_id} is not completed ({status}): only a completed chain can be pinned")
    requested = {(m.step, m.attempt): m for m in messages if isinstance(m, StepRequested)}
    rendered = {(m.step, m.attempt): m for m in messages if isinstance(m, StepRendered)}
    rungs = {(m.step, m.next_attempt): m for m in messages if isinstance(m, StepRetried)}
    # A step is accepted once; should a log hold two, the later one is what the next step edited.
    accepted = {m.step: m for m in messages if isinstance(m, StepAccepted)}
    steps = []
    for planned in plan.steps:
        keep = accepted.get(planned.index)
        if keep is None:
            raise GoldenError(f"chain {chain_id} step {planned.index + 1} has no accepted attempt")
        key = (planned.index, keep.attempt)
        if key not in requested or key not in rendered:
            raise GoldenError(f"chain {chain_id} step {planned.index + 1} attempt {keep.attempt}: the log lacks "
                              f"its {'request' if key not in requested else 'render'}")
        asked, made, rung = requested[key], rendered[key], rungs.get(key)
        steps.append(GoldenStep(params=_on_rung(_as_asked(planned, asked), rung), attempt=keep.attempt,
                                input_image=asked.input_image, image=keep.image, score=keep.score,
                                workflow_hash=made.workflow_hash, engine=made.engine,
                                with_reference=rung is not None and rung.rung == "face_restore"))
    return GoldenChainRecorded(chain_id=chain_id, character_id=request.character_id,
                               reference_image=request.reference_image, style=plan.style, threshold=plan.threshold,
                               steps=tuple(steps), recorded_by=recorded_by, note=note)


def _as_asked(planned: PlannedStep, asked: StepRequested) -> PlannedStep:
    """The plan's step with whatever the attempt's request set for itself: the seed today, and any other render
    parameter a request may carry (an attempt that lowered the denoise, say), so the pin is what was rendered."""
    own = {name: getattr(asked, name) for name in PlannedStep.model_fields
           if name != "index" and name in type(asked).model_fields and getattr(asked, name) is not None}
    return planned.model_copy(update=own)


def _on_rung(params: PlannedStep, retried: StepRetried | None) -> PlannedStep:
    """The step as the retry ladder's rung rendered it: the parameters its `StepRetried` changed (a lower
    denoise, lower LoRA weights; the face restore's own template, with no LoRAs and the template's denoise)."""
    if retried is None or retried.rung is None:
        return params
    if retried.rung == "face_restore":
        return params.model_copy(update={"template": retried.template or params.template, "loras": (),
                                         "denoise": None})
    return params.model_copy(update={"denoise": retried.denoise if retried.denoise is not None else params.denoise,
                                     "loras": retried.loras if retried.loras is not None else params.loras})


def pin_event_id(pin: GoldenChainRecorded, after_version: int) -> UUID:
    """The pin's event id, from its content and the `golden` stream's version it was decided at: a retried
    append of the same pin is one event, and pinning an older pin again after another one is a new event."""
    digest = hashlib.sha256(json.dumps(pin.body(), sort_keys=True).encode()).hexdigest()
    return uuid5(_PIN_NAMESPACE, f"{pin.chain_id}:{after_version}:{digest}")


def parse_swaps(given: Iterable[str]) -> dict[str, dict[str, str]]:
    """`["model:a.safetensors=b.safetensors", ...]` as {kind: {old: new}}; GoldenError naming a bad one."""
    swaps: dict[str, dict[str, str]] = {kind: {} for kind in SWAPPABLE}
    for text in given:
        kind, _, pair = text.partition(":")
        old, _, new = pair.partition("=")
        if kind not in SWAPPABLE or not old or not new:
            raise GoldenError(f"--swap {text!r}: expected KIND:OLD=NEW with KIND one of {', '.join(SWAPPABLE)}")
        if swaps[kind].setdefault(old, new) != new:
            raise GoldenError(f"--swap: {kind} {old!r} is swapped for both {swaps[kind][old]!r} and {new!r}")
    return swaps


def swapped(params: PlannedStep, swaps: dict[str, dict[str, str]]) -> PlannedStep:
    """The step with its model, template and LoRAs renamed as `swaps` says (strengths and roles kept)."""
    loras = tuple(lora.model_copy(update={"name": swaps["lora"].get(lora.name, lora.name)}) for lora in params.loras)
    return params.model_copy(update={"model": swaps["model"].get(params.model, params.model),
                                     "template": swaps["template"].get(params.template, params.template),
                                     "loras": loras})


def latest_pins(messages: Iterable[Message]) -> dict[UUID, GoldenChainRecorded]:
    """Each pinned chain's latest pin, in the order the chains were first pinned."""
    pins: dict[UUID, GoldenChainRecorded] = {}
    for message in messages:
        if isinstance(message, GoldenChainRecorded):
            pins[message.chain_id] = message
    return pins


def _only(messages: Sequence[Message], kind: type[M]) -> M | None:
    return next((m for m in messages if isinstance(m, kind)), None)
