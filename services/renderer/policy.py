"""Backend choice and VRAM-freeing decisions (pure: state and clock values in, decisions out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BackendView", "foreign_load", "preference", "serves", "should_free"]


@dataclass(frozen=True)
class BackendView:
    """What the policy needs to know about one backend."""

    url: str
    healthy: bool
    in_flight: int = 0
    # Prompts of other clients (other replicas, people) queued there at the last probe.
    foreign: int = 0
    last_used: float = 0.0
    models: frozenset[str] = frozenset()
    styles: frozenset[str] = frozenset()


def serves(view: BackendView, model: str, style: str | None) -> bool:
    """A backend that declares models (styles) serves only those; one that declares nothing serves all."""
    if view.models and model not in view.models:
        return False
    return not (view.styles and style is not None and style not in view.styles)


def preference(views: Sequence[BackendView], model: str, style: str | None) -> list[str]:
    """Backends that serve the job, best first: healthy, least loaded, least recently used, then listed order.

    Unhealthy ones stay at the end: a probe may be stale, and trying them beats failing outright.
    """
    ranked = [
        (not view.healthy, view.in_flight + view.foreign, view.last_used, index, view.url)
        for index, view in enumerate(views)
        if serves(view, model, style)
    ]
    return [entry[-1] for entry in sorted(ranked)]


def foreign_load(queue_remaining: int, in_flight: int) -> int:
    """Queue entries that are not ours: ComfyUI counts every client's pending and running prompts."""
    return max(0, queue_remaining - in_flight)


def should_free(*, in_flight: int, last_active: float | None, freed: bool, now: float, idle_s: float) -> bool:
    """Ask a backend to unload models once it has sat idle for `idle_s` after our last job, once."""
    if in_flight > 0 or freed or last_active is None:
        return False
    return now - last_active >= idle_s
