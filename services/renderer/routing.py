"""Which engine renders a job, and the next one when it cannot: routes by style and model, failover on outage.

    routes = {"style:watercolor": ("openai-images", "comfyui"), "model:flux-kontext-dev": ("runpod",),
              "default": ("comfyui", "runpod")}

A job's engines are those of its style's route, else its model's, else the default route, else every
engine configured, in the order given. The first one renders; one that is unreachable (its backends
down, the cloud answering 5xx or 429 before it took the job) hands the job to the next. Any other
failure is the attempt's answer: a picture the model refused will not be drawn elsewhere either.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from prometheus_client import Counter

from contracts.render import RenderStep
from services.renderer.engine import Progress, RenderEngine, RenderOutput
from services.renderer.errors import RenderError

__all__ = ["RoutedEngine", "engines_for"]

log = logging.getLogger(__name__)

FAILOVERS = Counter("likeness_renderer_engine_failovers_total",
                    "Jobs handed to the next engine because one was unreachable, by engine left and engine tried",
                    ["from_engine", "to_engine"])


def engines_for(job: RenderStep, routes: Mapping[str, Sequence[str]], available: Sequence[str]) -> list[str]:
    """The engines to try for `job`, in order: its style's route, its model's, the default, or all (pure)."""
    for key in (f"style:{job.style}" if job.style else None, f"model:{job.model}", "default"):
        if key is not None and key in routes:
            return [name for name in routes[key] if name in available]
    return list(available)


class RoutedEngine:
    """A `RenderEngine` over several: routes each job and fails over when an engine is unreachable."""

    name = "routed"

    def __init__(self, engines: Sequence[RenderEngine], routes: Mapping[str, Sequence[str]]) -> None:
        self.engines = {engine.name: engine for engine in engines}
        self.routes = {key: tuple(names) for key, names in routes.items()}
        unknown = {name for names in self.routes.values() for name in names} - set(self.engines)
        if unknown:
            raise ValueError(f"LIKENESS_RENDER_ROUTES names engines that are not configured: {sorted(unknown)}; "
                             f"configured: {sorted(self.engines)}")

    async def render(self, job: RenderStep, input_image: bytes | None, progress: Progress, *,
                     reference_image: bytes | None = None) -> RenderOutput:
        names = engines_for(job, self.routes, list(self.engines))
        if input_image is None:
            # A text-to-image job goes only to engines that can draw without a picture to edit.
            names = [name for name in names if not getattr(self.engines[name], "edits_only", False)]
        if job.reference_image is not None:
            # A job that compares with the reference (a face restore) needs an engine that runs templates.
            names = [name for name in names if getattr(self.engines[name], "takes_reference", True)]
        if not names:
            raise RenderError("validation", f"no configured engine serves style {job.style!r} / model {job.model!r} "
                                            "(see LIKENESS_RENDER_ROUTES)")
        failures: list[str] = []
        for index, name in enumerate(names):
            try:
                return await self.engines[name].render(job, input_image, progress, reference_image=reference_image)
            except RenderError as exc:
                if exc.kind != "unreachable" or index + 1 == len(names):
                    if failures:
                        exc.reason = f"{exc.reason} (after {'; '.join(failures)})"
                    raise
                failures.append(f"{name}: {exc.reason}")
                FAILOVERS.labels(name, names[index + 1]).inc()
                log.warning("chain %s step %s attempt %s: engine %s is unreachable (%s); trying %s", job.chain_id,
                            job.step, job.attempt, name, exc.reason, names[index + 1])
        raise AssertionError("unreachable: the loop returns or raises")
