"""The ComfyUI engine: bind the job into its template, pick a backend, render there, fail over if it is down."""

from __future__ import annotations

import asyncio
import hashlib
import io

import httpx
from PIL import Image

from contracts.render import RenderStep
from services.renderer.comfyui.client import ComfyUIClient, Submission, Timeouts
from services.renderer.engine import Progress, RenderOutput
from services.renderer.errors import BackendUnreachable, RenderError
from services.renderer.pool import BackendPool
from services.renderer.templates import TemplateLibrary

__all__ = ["UPLOAD_FOLDER", "ComfyUIEngine"]

# Inputs are uploaded as "<folder>/<sha256>.<ext>": the name says the content, so the bound graph
# (and its hash) depends on the picture, and overwriting a same-named file changes nothing.
UPLOAD_FOLDER = "likeness"
_FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "WEBP": ("webp", "image/webp")}


class ComfyUIEngine:
    """Renders on the pool's backends; `http` is shared and closed by its owner."""

    name = "comfyui"

    def __init__(self, pool: BackendPool, templates: TemplateLibrary, http: httpx.AsyncClient, *,
                 timeouts: Timeouts, deadline_s: float) -> None:
        self.pool = pool
        self.templates = templates
        self.http = http
        self.timeouts = timeouts
        self.deadline_s = deadline_s

    async def render(self, job: RenderStep, input_image: bytes, progress: Progress) -> RenderOutput:
        """Render `job`; a backend that cannot be reached is marked down and the next one is tried."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(job.deadline_s or self.deadline_s, self.deadline_s)
        template = self.templates.get(job.template)
        submission, workflow_hash = self._submission(job, template.edit, input_image)
        failures: list[str] = []
        for url in self.pool.candidates(job.model, job.style):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RenderError("timeout", "render deadline passed while looking for a backend: "
                                  + "; ".join(failures))
            client = ComfyUIClient(url, self.http, self.timeouts)
            async with self.pool.lease(url):
                try:
                    result = await client.render(submission, deadline_s=remaining, on_update=progress)
                except BackendUnreachable as exc:
                    self.pool.mark_down(url, exc.reason)
                    failures.append(exc.reason)
                    continue
            return RenderOutput(result.image, result.media_type, workflow_hash, url, self.name, result.timings)
        raise RenderError("unreachable", "no ComfyUI backend could take the job: " + "; ".join(failures))

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
