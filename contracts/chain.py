"""The chain family: one picture request, planned into edit steps and driven to an image.

The planner is the single writer of the stream `chain-<chain_id>`; every attempt of every step,
its seed, score and the decision taken are recorded here, so a chain can be audited, re-rendered
or branched from the log alone.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.base import Command, Event, ImageRef, StepAttempt
from contracts.usage import ModelUsage
from contracts.fields import (
    Attempt,
    Cfg,
    CharacterId,
    Denoise,
    Dimension,
    LoraStrength,
    Reason,
    SamplerSteps,
    Score,
    Seed,
    StepIndex,
    Timings,
    UserId,
)

__all__ = [
    "CHAIN_ENDS",
    "MAX_BATCH",
    "AttemptScore",
    "BatchCompleted",
    "CancelChain",
    "ChainCancelled",
    "ChainCompleted",
    "ChainFailed",
    "ChainPlanned",
    "ChainReanchored",
    "ChainRefused",
    "ChainRequested",
    "LoraUse",
    "PlannedStep",
    "RequestChain",
    "StepAccepted",
    "StepFailed",
    "StepRendered",
    "StepRequested",
    "StepRetried",
    "StepScored",
    "variant_chain_id",
]

# The most chains one batch holds: `--count` asks for at most 4, a batch of different requests at most 20.
MAX_BATCH = 20


class LoraUse(BaseModel):
    """One LoRA applied to a step, at a strength, for a purpose."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    strength: LoraStrength = 1.0
    role: Literal["style", "character", "concept"]


class PlannedStep(BaseModel):
    """One edit of the plan: everything the renderer needs to reproduce it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: StepIndex
    # "generate": the one step of a text-to-image chain, which draws a new picture instead of editing one.
    kind: Literal["background", "pose", "outfit", "generate"]
    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    loras: tuple[LoraUse, ...] = ()
    width: Dimension
    height: Dimension
    seed: Seed
    model: str = Field(min_length=1)
    template: str = Field(min_length=1)
    steps: SamplerSteps
    cfg: Cfg
    denoise: Denoise | None = None


class AttemptScore(BaseModel):
    """How one attempt of a step fared; `score` is None when it never got scored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt: Attempt
    seed: Seed
    score: Score | None = None
    reason: str | None = None


class _ChainRequest(BaseModel):
    """Fields shared by the request command and the event that records it."""

    chain_id: UUID
    # None only for a text-to-image chain (`mode="t2i"`), which has no character and no face to keep.
    character_id: CharacterId | None = None
    user_id: UserId
    request_text: str = Field(min_length=1)
    reference_image: ImageRef | None = None
    # "edit": a chain of edits of the character's reference, each held to its face (every chain before
    # text-to-image existed); "t2i": one picture drawn from the text by a text-to-image model, not face-checked.
    mode: Literal["edit", "t2i"] = "edit"
    # A branch re-plans from an existing chain, reusing its accepted images up to `branch_from_step`.
    parent_chain_id: UUID | None = None
    branch_from_step: StepIndex | None = None
    # `--count N` fans one request out into N chains; each knows its place among them.
    variant_index: int = Field(default=0, ge=0)
    variant_count: int = Field(default=1, ge=1, le=MAX_BATCH)
    # The chains of one batch share a batch id (the first chain's id).
    batch_id: UUID | None = None
    # "count": the variants of one request (`--count N`), whose seeds derive from one base seed by
    # `variant_index`; "requests": different requests sent together (POST /batch), each planned on its own.
    batch_kind: Literal["count", "requests"] = "count"
    # The image the first step edits; None means the character's reference image.
    input_image: ImageRef | None = None

    @model_validator(mode="after")
    def _consistent(self) -> _ChainRequest:
        if self.variant_index >= self.variant_count:
            raise ValueError(f"variant_index {self.variant_index} must be below variant_count {self.variant_count}")
        if self.branch_from_step is not None and self.parent_chain_id is None:
            raise ValueError("branch_from_step needs parent_chain_id")
        if self.mode == "edit" and (self.character_id is None or self.reference_image is None):
            raise ValueError("an edit chain needs character_id and reference_image (mode \"t2i\" draws without)")
        if self.mode == "t2i" and (self.character_id, self.reference_image, self.input_image,
                                   self.parent_chain_id) != (None, None, None, None):
            raise ValueError("a text-to-image chain has no character, reference, input image or parent chain")
        return self


def variant_chain_id(batch_id: UUID, index: int) -> UUID:
    """The chain id of chain `index` of a batch (index 0 is the batch id itself); derived, so whoever asks for
    a batch's chains (the planner fanning out `--count`, the gateway sending POST /batch) names them alike."""
    return batch_id if index == 0 else uuid5(batch_id, f"variant-{index}")


class RequestChain(_ChainRequest, Command):
    """Ask the planner to make a picture of a character from free text."""

    type: Literal["chain.request"] = "chain.request"
    version: Literal[1] = 1


class CancelChain(Command):
    """Ask the planner to stop a chain; steps in flight finish but nothing new starts."""

    type: Literal["chain.cancel"] = "chain.cancel"
    version: Literal[1] = 1

    chain_id: UUID
    reason: str | None = None
    requested_by: UserId


class ChainRequested(_ChainRequest, Event):
    """A picture request was accepted into the log; the chain exists from here on."""

    type: Literal["chain.requested"] = "chain.requested"
    version: Literal[1] = 1


class ChainRefused(Event):
    """The request broke a rule (content policy, quota, ...) and will not be planned."""

    type: Literal["chain.refused"] = "chain.refused"
    version: Literal[1] = 1

    chain_id: UUID
    reason: Reason
    rule: str = Field(min_length=1)
    # The language-model calls planning made before the refusal ("nothing to edit" comes after one).
    llm_usage: ModelUsage | None = None


class ChainPlanned(Event):
    """The ordered edit steps, and the policy the chain will be judged by."""

    type: Literal["chain.planned"] = "chain.planned"
    version: Literal[1] = 1

    chain_id: UUID
    steps: tuple[PlannedStep, ...] = Field(min_length=1)
    planner: Literal["llm", "rules"]
    # E.g. why the rule-based planner served: no LLM configured, or the LLM's plan was invalid.
    planner_note: str | None = None
    threshold: Score = 40.0
    max_retries: int = Field(default=3, ge=0, le=10)
    # What happens when every attempt of a step drifts: end the chain, or keep the best attempt.
    on_exhausted: Literal["fail", "accept_best"] = "fail"
    # The art style the plan was made for; the renderer routes on it.
    style: str | None = None
    # The language-model calls planning made (also when the rules' plan was used after them).
    llm_usage: ModelUsage | None = None
    # How a drifted step is tried again: False (every chain planned before the ladder) re-rolls the seed only;
    # True climbs the retry ladder (new seed, lower denoise, lower the face-moving LoRA, then a face restore).
    retry_ladder: bool = False
    # The renderer template of the ladder's last rung, a face-restore pass on the best attempt; None: no such rung.
    restore_template: str | None = Field(default=None, min_length=1)
    # Where `threshold` came from: the deployment's default, the character's own (set by hand), or learned
    # from the character's accepted scores (`CharacterThresholdLearned`). None in chains planned before.
    threshold_source: Literal["default", "character", "learned"] | None = None
    # The drift this chain starts with: its parent's cumulative drift at the picture it edits (a follow-up).
    inherited_drift: float | None = Field(default=None, ge=0)
    # Past this cumulative drift the next step re-anchors on the reference (`ChainReanchored`); None: never.
    drift_budget: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _steps_in_order(self) -> ChainPlanned:
        indices = [step.index for step in self.steps]
        if indices != list(range(len(self.steps))):
            raise ValueError(f"step indices must be 0..{len(self.steps) - 1} in order, got {indices}")
        return self


class StepRequested(StepAttempt, Event):
    """The planner asked for one attempt of a step to be rendered."""

    type: Literal["chain.step_requested"] = "chain.step_requested"
    version: Literal[1] = 1

    seed: Seed
    # None: the step draws from text alone (a text-to-image chain).
    input_image: ImageRef | None = None


class StepRendered(StepAttempt, Event):
    """An attempt was rendered; provenance enough to reproduce it."""

    type: Literal["chain.step_rendered"] = "chain.step_rendered"
    version: Literal[1] = 1

    image: ImageRef
    workflow_hash: str = Field(min_length=1)
    backend: str = Field(min_length=1)
    engine: str = Field(min_length=1)
    timings: Timings = {}
    # What a paid render engine billed for this attempt, where its API reports it.
    cost_usd: float | None = Field(default=None, ge=0)


class StepScored(StepAttempt, Event):
    """The face check's verdict on an attempt, with the threshold it was held to."""

    type: Literal["chain.step_scored"] = "chain.step_scored"
    version: Literal[1] = 1

    score: Score
    faces_found: int = Field(ge=0)
    threshold: Score
    # Similarity to the picture this attempt edited (the previous accepted one), when that was not the reference.
    previous_score: Score | None = None


class StepAccepted(StepAttempt, Event):
    """An attempt's image is kept; the next step edits it."""

    type: Literal["chain.step_accepted"] = "chain.step_accepted"
    version: Literal[1] = 1

    image: ImageRef
    # None only for "unscored".
    score: Score | None = None
    # "best_attempt": no attempt reached the threshold and policy kept the best one; "unscored": a
    # text-to-image step, kept as rendered (there is no reference face to hold it to).
    decision: Literal["threshold", "best_attempt", "unscored"] = "threshold"
    # How far this step moved the face from the picture it edited (100 - similarity to it), and the chain's
    # sum of those since its last anchor on the reference, a parent's included. None: not measured.
    drift: float | None = Field(default=None, ge=0)
    cumulative_drift: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _scored_unless_unscored(self) -> StepAccepted:
        if (self.score is None) != (self.decision == "unscored"):
            raise ValueError("a step accepted by its face score has a score; only an \"unscored\" one has none")
        return self


class ChainReanchored(Event):
    """The chain drifted past its budget: step `step` edits the reference image instead of the last picture."""

    type: Literal["chain.reanchored"] = "chain.reanchored"
    version: Literal[1] = 1

    chain_id: UUID
    step: StepIndex
    cumulative_drift: float = Field(ge=0)
    budget: float = Field(gt=0)
    # The picture the step would have edited, and the one it edits instead.
    replaced_image: ImageRef
    input_image: ImageRef
    reason: Reason


class StepRetried(Event):
    """An attempt fell short; the step is rendered again with a new seed (and, on the retry ladder, a rung)."""

    type: Literal["chain.step_retried"] = "chain.step_retried"
    version: Literal[1] = 1

    chain_id: UUID
    step: StepIndex
    next_attempt: int = Field(ge=2)
    new_seed: Seed
    previous_score: Score | None = None
    reason: Reason
    # The ladder's rung: what changed against the attempt before. None: a plain re-roll (a chain planned before
    # the ladder) or the same attempt again after a render failure.
    rung: Literal["reseed", "lower_denoise", "lower_lora", "face_restore"] | None = None
    # The parameters the next attempt renders with where a rung changed them from the plan's (None: the plan's).
    denoise: Denoise | None = None
    loras: tuple[LoraUse, ...] | None = None
    template: str | None = None
    # "face_restore": the attempt whose picture is restored (the best so far).
    restores_attempt: Attempt | None = None


class StepFailed(StepAttempt, Event):
    """An attempt could not be rendered or scored at all."""

    type: Literal["chain.step_failed"] = "chain.step_failed"
    version: Literal[1] = 1

    reason: Reason
    stage: Literal["render", "facecheck"]


class ChainCompleted(Event):
    """Every step was accepted; the last step's image is the picture."""

    type: Literal["chain.completed"] = "chain.completed"
    version: Literal[1] = 1

    chain_id: UUID
    final_image: ImageRef
    step_images: tuple[ImageRef, ...] = Field(min_length=1)


class ChainFailed(Event):
    """A step ran out of attempts; the chain ends without a picture."""

    type: Literal["chain.failed"] = "chain.failed"
    version: Literal[1] = 1

    chain_id: UUID
    step: StepIndex
    reason: Reason
    attempts: tuple[AttemptScore, ...] = ()


class ChainCancelled(Event):
    """The chain was stopped on request."""

    type: Literal["chain.cancelled"] = "chain.cancelled"
    version: Literal[1] = 1

    chain_id: UUID
    reason: str | None = None
    requested_by: UserId


class BatchCompleted(Event):
    """Every chain of a `--count N` request has finished; their pictures as one WebP grid."""

    type: Literal["chain.batch_completed"] = "chain.batch_completed"
    version: Literal[1] = 1

    batch_id: UUID
    chain_ids: tuple[UUID, ...] = Field(min_length=1)
    completed: tuple[UUID, ...] = ()
    # None when no chain of the batch produced a picture.
    grid_image: ImageRef | None = None


# The events after which a chain's stream never grows again: the one list every service and reader uses.
CHAIN_ENDS: frozenset[str] = frozenset({ChainCompleted.model_fields["type"].default,
                                        ChainFailed.model_fields["type"].default,
                                        ChainRefused.model_fields["type"].default,
                                        ChainCancelled.model_fields["type"].default})
