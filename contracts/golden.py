"""The golden family: completed chains pinned as a release gate (`likeness golden record` / `verify`).

A pin holds, for every accepted step, exactly what rendered it (the plan's parameters with the accepted
attempt's seed and input image) and what came out (image, score, workflow hash), so `likeness golden verify`
can render each step again after a template, model or LoRA change and compare. Pins live in the log (the
stream `golden`), not in a file: every machine that reaches the database finds the same gate.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.base import Event, ImageRef
from contracts.chain import PlannedStep
from contracts.fields import Attempt, CharacterId, Score

__all__ = ["GoldenChainRecorded", "GoldenStep"]


class GoldenStep(BaseModel):
    """One accepted step of a pinned chain: how its accepted attempt was rendered, and what it gave."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The plan's step with the accepted attempt's seed: every parameter a RenderStep carries.
    params: PlannedStep
    attempt: Attempt
    # The image that attempt edited (None: a text-to-image step draws from text alone).
    input_image: ImageRef | None = None
    image: ImageRef
    # None only for a text-to-image step, which is never face-checked.
    score: Score | None = None
    workflow_hash: str = Field(min_length=1)
    engine: str | None = None
    # The accepted attempt was the retry ladder's face-restore pass: its template also reads the chain's
    # reference picture, so a re-render must send it too.
    with_reference: bool = False


class GoldenChainRecorded(Event):
    """A completed chain was pinned; the latest pin of a chain is the one `verify` holds renders to."""

    type: Literal["golden.chain_recorded"] = "golden.chain_recorded"
    version: Literal[1] = 1

    chain_id: UUID
    character_id: CharacterId | None = None
    # What each re-rendered step is face-checked against (None: a text-to-image chain).
    reference_image: ImageRef | None = None
    style: str | None = None
    threshold: Score
    steps: tuple[GoldenStep, ...] = Field(min_length=1)
    recorded_by: str = Field(min_length=1)
    note: str | None = None

    @model_validator(mode="after")
    def _steps_in_order(self) -> GoldenChainRecorded:
        indices = [step.params.index for step in self.steps]
        if indices != list(range(len(self.steps))):
            raise ValueError(f"pinned step indices must be 0..{len(self.steps) - 1} in order, got {indices}")
        return self
