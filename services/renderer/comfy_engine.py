"""The ComfyUI engine: bind the job into its template, pick a backend, render there, fail over if it is down.

When no backend can take the job, it waits (at most `backend_wait_s`) for one to come back,
re-probing with the back-off of `policy.next_probe_in`; a ComfyUI restart then costs a delay, not the attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from dataclasses import dataclass

import httpx
from PIL import Image

from contracts.render import RenderStep
from services.renderer.comfyui.client import ComfyUIClient, Submission, Timeouts
from services.renderer.engine import Progress, RenderOutput, Waiting
from services.renderer.errors import BackendUnreachable, RenderError
from services.renderer.backend_policy import next_probe_in, unreachable_reason
from services.renderer.pool import BackendPool
from services.renderer.templates import TemplateLibrary

__all__ = ["UPLOAD_FOLDER", "ComfyUIEngine"]

log = logging.getLogger(__name__)

# Inputs are uploaded as "<folder>/<sha256>.<ext>": the name says the content, so the bound graph
# (and its hash) depends on the picture, and overwriting a same-named file changes nothing.
UPLOAD_FOLDER = "likeness"
_FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "WEBP": ("webp", "image/webp")}


@dataclass
class _Wait:
    """One job's wait for a backend so far."""

    limit_s: float
    waited_s: float = 0.0
    probes: int = 0


class ComfyUIEngine:
    """Renders on the pool's backends; `http` is shared and closed by its owner."""

    name = "comfyui"

    def __init__(self, pool: BackendPool, templates: TemplateLibrary, http: httpx.AsyncClient, *,
                 timeouts: Timeouts, deadline_s: float, backend_wait_s: float = 0.0) -> None:
        self.pool = pool
        self.templates = templates
        self.http = http
        self.timeouts = timeouts
        self.deadline_s = deadline_s
        self.backend_wait_s = backend_wait_s

    async def render(self, job: RenderStep, input_image: bytes, progress: Progress) -> RenderOutput:
        """Render `job`; a backend that cannot be reached is marked down and the next one is tried.

        If none can take it, wait for one (time spent waiting does not count against the render deadline).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(job.deadline_s or self.deadline_s, self.deadline_s)
        template = self.templates.get(job.template)
        submission, workflow_hash = self._submission(job, template.edit, input_image)
        urls = self.pool.candidates(job.model, job.style)
        failures: dict[str, str] = {}
        wait = _Wait(self.backend_wait_s)
        while True:
            for url in urls:
                remaining = deadline + wait.waited_s - loop.time()
                if remaining <= 0:
                    raise RenderError("timeout", "render deadline passed while looking for a backend: "
                                      + "; ".join(failures.values()))
                client = ComfyUIClient(url, self.http, self.timeouts)
                async with self.pool.lease(url):
                    try:
                        result = await client.render(submission, deadline_s=remaining, on_update=progress)
                    except BackendUnreachable as exc:
                        self.pool.mark_down(url, exc.reason)
                        failures[url] = exc.reason
                        continue
                    except RenderError as exc:
                        if exc.kind == "unreachable":  # went away after queueing: final here, but tell the pool
                            self.pool.mark_down(url, exc.reason)
                        raise
                if wait.probes:
                    log.info("chain %s step %s attempt %s: backend %s took the job after %.1f s of waiting",
                             job.chain_id, job.step, job.attempt, url, wait.waited_s)
                return RenderOutput(result.image, result.media_type, workflow_hash, url, self.name, result.timings)
            urls = await self._wait_for_backend(job, wait, failures, progress)
            if not urls:
                raise RenderError("unreachable", unreachable_reason(wait.waited_s, wait.limit_s, failures))

    async def _wait_for_backend(self, job: RenderStep, wait: _Wait, failures: dict[str, str],
                                progress: Progress) -> list[str]:
        """Sleep and re-probe until a backend serving the job answers (its urls, best first) or the wait is over ([])."""
        loop = asyncio.get_running_loop()
        if wait.probes == 0 and wait.limit_s > 0:
            log.warning("chain %s step %s attempt %s: no ComfyUI backend can take it (%s); waiting up to %.0f s "
                        "for one", job.chain_id, job.step, job.attempt, ", ".join(failures), wait.limit_s)
        while (delay := next_probe_in(wait.waited_s, wait.limit_s, wait.probes)) is not None:
            await _tell(progress, Waiting(tuple(failures), round(wait.waited_s, 1), wait.limit_s))
            began = loop.time()
            await asyncio.sleep(delay)
            ready = await self.pool.probe_serving(job.model, job.style)
            wait.waited_s += loop.time() - began
            wait.probes += 1
            for url, backend in self.pool.backends.items():
                if url in failures and not backend.healthy and backend.down_reason:
                    failures[url] = backend.down_reason
            if ready:
                return ready
        return []

    def _submission(self, job: RenderStep, edit: bool, input_image: bytes) -> tuple[Submission, str]:
        template = self.templates.get(job.template)
        if not edit:
            bound = template.bind(job, input_ref=None)
            return Submission(bound.graph, bound.output_node), bound.workflow_hash
        ext, media_type = _sniff(input_image)
        ref = f"{UPLOAD_FOLDER}/{hashlib.sha256(input_image).hexdigest()}.{ext}"
        bound = template.bind(job, input_ref=ref)
        submission = Submission(bound.graph, bound.output_node, bound.input_node, input_image, ref, media_type)
        return submission, bound.workflow_hash


def _sniff(data: bytes) -> tuple[str, str]:
    try:
        with Image.open(io.BytesIO(data), formats=list(_FORMATS)) as image:
            return _FORMATS[image.format or ""]
    except (OSError, KeyError, ValueError):
        raise RenderError("validation", "the input image is not a PNG, JPEG or WebP picture") from None


async def _tell(progress: Progress, update: Waiting) -> None:
    # Progress is a courtesy: a failing listener must never fail the render.
    try:
        await progress(update)
    except Exception:  # noqa: BLE001
        log.exception("progress listener failed")
