"""What planning produces: edit intents drafted from text, then a Plan or a Refusal."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.chain import PlannedStep
from contracts.fields import Seed

__all__ = ["KIND_ORDER", "Draft", "EditIntent", "EditKind", "LlmSpend", "Plan", "PlanDecision", "Refusal"]

EditKind = Literal["background", "pose", "outfit"]

# The order that keeps the face safest. Each step edits the previous step's output and is held
# to the reference face, so drift accumulates and a late failure costs everything before it:
# * background first: it repaints the pixels around the person and touches the fewest face
#   pixels, so it almost never drifts, and later steps see the final scene (a pose "sitting on a
#   towel" is drawn onto the beach already there, not onto a studio wall that then gets replaced);
# * outfit second: it repaints the body below the neck, the face only at the collar;
# * pose last: it moves the head and re-renders the face more than anything else, so it drifts
#   and retries most. Last, its retries redo only itself, and if it fails for good the accepted
#   background and outfit images stay in the log to branch from with another pose.
KIND_ORDER: tuple[EditKind, ...] = ("background", "outfit", "pose")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LlmSpend(_Frozen):
    """The model calls a draft took, and their tokens: what the plan's cost is worked out from."""

    calls: int = Field(default=0, ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    # True when a server sent no usage and the counts are estimates.
    estimated: bool = False

    def plus(self, prompt_tokens: int, completion_tokens: int, *, reported: bool = True) -> LlmSpend:
        return LlmSpend(calls=self.calls + 1, prompt_tokens=self.prompt_tokens + prompt_tokens,
                        completion_tokens=self.completion_tokens + completion_tokens,
                        estimated=self.estimated or not reported)


class EditIntent(_Frozen):
    """One edit a request asks for, before sizes, seeds and LoRAs are chosen."""

    kind: EditKind
    # What the edit is about, in the user's words ("a beach at sunset"); LoRA keywords match on it.
    description: str = Field(min_length=1)
    # The instruction for the edit model ("Change the background to a beach at sunset, ...").
    prompt: str = Field(min_length=1)
    negative: tuple[str, ...] = ()


class Draft(_Frozen):
    """Edit intents in the order they should run, drafted by the rules or by an LLM."""

    intents: tuple[EditIntent, ...] = ()
    # Things no step should produce (negations not tied to one kind of edit).
    negative: tuple[str, ...] = ()
    planner: Literal["rules", "llm"] = "rules"
    note: str | None = None
    # The request's words minus what it negates: what the content policy reads.
    positive_text: str = ""
    # What the request says to keep: things ("hair") every step keeps, kinds of edit not to make at all.
    kept: tuple[str, ...] = ()
    left_alone: tuple[EditKind, ...] = ()
    # The model calls drafting took (None when the rules drafted without one).
    llm_spend: LlmSpend | None = None


class Plan(_Frozen):
    """A request planned into steps the saga can render."""

    steps: tuple[PlannedStep, ...] = Field(min_length=1)
    planner: Literal["rules", "llm"]
    note: str | None = None
    # Plan-wide negative prompt (from `--no` and from negations); each step's includes it.
    negative_prompt: str = ""
    count: int = Field(default=1, ge=1, le=4)
    # `--seed base_seed` reproduces this plan; step seeds derive from it.
    base_seed: Seed
    # None for a text-to-image plan: it has no art style, so no backend is ruled out by one.
    style: str | None
    backend: str
    llm_spend: LlmSpend | None = None


class Refusal(_Frozen):
    """The request will not be planned; the saga records ChainRefused(reason, rule)."""

    reason: str = Field(min_length=1)
    rule: str = Field(min_length=1)
    # A refusal after the model was asked ("nothing to edit") still paid for the calls.
    llm_spend: LlmSpend | None = None


PlanDecision = Plan | Refusal
