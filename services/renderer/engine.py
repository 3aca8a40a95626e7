"""What every render engine offers: `render(job, input_image, progress) -> RenderOutput`, raising `RenderError`.

`input_image` is None for a text-to-image job (a `*_t2i` template, nothing to edit). `reference_image` is the
character's reference picture when the job names one (`RenderStep.reference_image`, the ladder's face restore);
an engine that cannot use it says so with `takes_reference = False` and is not routed such jobs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from contracts.render import RenderStep

__all__ = ["Preview", "Progress", "Queued", "RenderEngine", "RenderOutput", "RenderUpdate", "Tick", "Waiting"]


@dataclass(frozen=True)
class Tick:
    """A progress tick: `value` of `max` on `node`."""

    value: int
    max: int
    node: str | None = None


@dataclass(frozen=True)
class Preview:
    """A live preview frame as the backend sent it (not yet shrunk for the bus)."""

    media_type: str
    data: bytes
    node: str | None = None


@dataclass(frozen=True)
class Waiting:
    """No backend can take the job now: it has waited `waited_s` of at most `limit_s` for one of `backends`."""

    backends: tuple[str, ...]
    waited_s: float
    limit_s: float


@dataclass(frozen=True)
class Queued:
    """The job waits behind `ahead` others (0: next): in the renderer's scheduler for a backend slot (an
    estimate: the queue is fair between users), then in the backend's own queue."""

    ahead: int


RenderUpdate = Tick | Preview | Waiting | Queued
Progress = Callable[[RenderUpdate], Awaitable[None]]


@dataclass(frozen=True)
class RenderOutput:
    """The rendered image and what produced it."""

    image: bytes
    media_type: str
    workflow_hash: str
    backend: str
    engine: str
    timings: dict[str, float] = field(default_factory=dict)
    # What a paid engine billed for this render, where its API says (None: unknown or free).
    cost_usd: float | None = None


class RenderEngine(Protocol):
    """Renders one attempt of one step; raises `RenderError` with a kind from `RenderFailed`."""

    name: str

    async def render(self, job: RenderStep, input_image: bytes | None, progress: Progress, *,
                     reference_image: bytes | None = None) -> RenderOutput: ...
