"""The render family: the planner asks the renderer for one attempt of one step.

The renderer is stateless: it answers each `RenderStep` with `RenderCompleted` or `RenderFailed`,
and streams progress and preview frames on core NATS while ComfyUI works.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from contracts.base import Command, Ephemeral, Event, ImageRef, StepAttempt
from contracts.chain import LoraUse
from contracts.fields import (
    Cfg,
    Denoise,
    Dimension,
    Reason,
    SamplerSteps,
    Seed,
    Timings,
    UserId,
)

__all__ = ["RenderCompleted", "RenderFailed", "RenderPreview", "RenderProgress", "RenderStep", "RenderWaiting"]

# Previews ride core NATS (1 MiB default max payload) next to the envelope; keep them small.
_PREVIEW_MAX_CHARS = 256 * 1024


class RenderStep(StepAttempt, Command):
    """Render one attempt of one step: edit `input_image` as the plan says (or, without one, draw from text)."""

    type: Literal["render.step"] = "render.step"
    version: Literal[1] = 1

    seed: Seed
    # None: a text-to-image step, for a `*_t2i` template that has no input image.
    input_image: ImageRef | None = None
    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    loras: tuple[LoraUse, ...] = ()
    width: Dimension
    height: Dimension
    steps: SamplerSteps
    cfg: Cfg
    denoise: Denoise | None = None
    model: str = Field(min_length=1)
    template: str = Field(min_length=1)
    # The character's reference picture, for a template that takes it as a second input (`face_restore`).
    reference_image: ImageRef | None = None
    # Lets the backend pool route to a backend that serves this art style.
    style: str | None = None
    deadline_s: float | None = Field(default=None, gt=0)
    # Whose picture it is: the renderer shares its backends fairly between users (None: each chain is
    # its own share, as for commands sent before the field existed).
    user_id: UserId | None = None


class RenderProgress(StepAttempt, Ephemeral):
    """A sampler tick from ComfyUI: `value` of `max` on `node`."""

    type: Literal["render.progress"] = "render.progress"
    version: Literal[1] = 1

    value: int = Field(ge=0)
    max: int = Field(gt=0)
    node: str | None = None
    queue_position: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _within_max(self) -> RenderProgress:
        if self.value > self.max:
            raise ValueError(f"progress value {self.value} exceeds max {self.max}")
        return self


class RenderWaiting(StepAttempt, Ephemeral):
    """No render backend can take the attempt now: the renderer is waiting for one to come back."""

    type: Literal["render.waiting"] = "render.waiting"
    version: Literal[1] = 1

    waited_s: float = Field(ge=0)
    # How long it waits at most before the attempt fails as unreachable.
    limit_s: float = Field(ge=0)


class RenderPreview(StepAttempt, Ephemeral):
    """A small live preview frame of the image being sampled."""

    type: Literal["render.preview"] = "render.preview"
    version: Literal[1] = 1

    media_type: Literal["image/jpeg", "image/png"]
    data_base64: str = Field(min_length=4, max_length=_PREVIEW_MAX_CHARS, pattern=r"^[A-Za-z0-9+/]+={0,2}$")
    node: str | None = None


class RenderCompleted(StepAttempt, Event):
    """The attempt's image is in the blob store; with what rendered it and how long it took."""

    type: Literal["render.completed"] = "render.completed"
    version: Literal[1] = 1

    image: ImageRef
    workflow_hash: str = Field(min_length=1)
    backend: str = Field(min_length=1)
    # "comfyui", "runpod" or "openai-images" for real renders, "draft" for the built-in stand-in renderer.
    engine: str = Field(min_length=1)
    timings: Timings = {}
    # What a paid engine billed for the attempt, where its API reports it (None: unknown or free).
    cost_usd: float | None = Field(default=None, ge=0)


class RenderFailed(StepAttempt, Event):
    """The attempt produced no image; `error_kind` says whether a retry can help."""

    type: Literal["render.failed"] = "render.failed"
    version: Literal[1] = 1

    reason: Reason
    # Named `error_kind`, not `kind`: a field `kind` would shadow Message.kind ("event") on instances.
    error_kind: Literal["validation", "execution", "unreachable", "timeout", "interrupted", "internal"]
    node_id: str | None = None
    node_type: str | None = None
    backend: str | None = None
