"""Backend choice, waiting for a backend, and VRAM-freeing decisions (pure: state and clock values in, decisions out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["BackendView", "available", "foreign_load", "next_probe_in", "preference", "serves", "should_free",
           "unreachable_reason"]

# While no backend can take a job, re-probe after 0.5 s, then 1, 2, 4, and every 5 s after that.
PROBE_FIRST_S = 0.5
PROBE_CAP_S = 5.0


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


def available(views: Sequence[BackendView], model: str, style: str | None) -> list[str]:
    """Healthy backends that serve the job, best first (used after a fresh probe, so health is current)."""
    healthy = {view.url for view in views if view.healthy}
    return [url for url in preference(views, model, style) if url in healthy]


def next_probe_in(waited_s: float, limit_s: float, probes: int, *, first_s: float = PROBE_FIRST_S,
                  cap_s: float = PROBE_CAP_S) -> float | None:
    """Seconds to sleep before the next probe while waiting for a backend; None when the wait is over.

    The delay doubles from `first_s` up to `cap_s` and is cut to what is left of `limit_s`, so the
    last probe falls at the end of the wait; `limit_s` 0 means no waiting at all.
    """
    left = limit_s - waited_s
    if left <= 0:
        return None
    return min(first_s * 2 ** min(probes, 32), cap_s, left)


def unreachable_reason(waited_s: float, limit_s: float, failures: Mapping[str, str]) -> str:
    """Why a job found no backend: how long it waited for one, which it tried and each one's last error."""
    waited = f"after waiting {waited_s:.1f} s for one to come back" if limit_s > 0 else "(waiting for one is off)"
    tried = ", ".join(f"{url} ({reason})" for url, reason in failures.items()) or "none"
    return f"no ComfyUI backend could take the job {waited}; tried {tried}"


def foreign_load(queue_remaining: int, in_flight: int) -> int:
    """Queue entries that are not ours: ComfyUI counts every client's pending and running prompts."""
    return max(0, queue_remaining - in_flight)


def should_free(*, in_flight: int, last_active: float | None, freed: bool, now: float, idle_s: float) -> bool:
    """Ask a backend to unload models once it has sat idle for `idle_s` after our last job, once."""
    if in_flight > 0 or freed or last_active is None:
        return False
    return now - last_active >= idle_s
