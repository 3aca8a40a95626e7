"""The ComfyUI engine: bind the job into its template, wait for the scheduler to grant a backend, render there,
fail over if it is down.

Jobs wait for a free backend slot in `scheduler.Scheduler`, which shares the backends fairly between users
and prefers a backend that has the job's model loaded; that wait is not counted in the render deadline.

When no backend can take the job, it waits (at most `backend_wait_s`) for one to come back,
re-probing with the back-off of `policy.next_probe_in`; a ComfyUI restart then costs a delay, not the attempt.

A render the infrastructure lost after it was queued (the backend went away, restarted and forgot the
prompt, or interrupted it) is rendered again with the same seed, up to `infra_retries` times within
the deadline: the user's face retries are for pictures that drift, not for servers that restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
from prometheus_client import Counter

from contracts.render import RenderStep
from services.renderer.comfyui.client import ClientResult, ComfyUIClient, Submission, Timeouts
from services.renderer.images import image_kind
from services.renderer.engine import Progress, Queued, RenderOutput, RenderUpdate, Waiting
from services.renderer.errors import BackendUnreachable, RenderError
from services.renderer.backend_policy import next_probe_in, unreachable_reason
from services.renderer.metrics import QUEUE_DEPTH
from services.renderer.pool import BackendPool
from services.renderer.scheduler import Scheduler
from services.renderer.templates import TemplateLibrary

__all__ = ["UPLOAD_FOLDER", "ComfyUIEngine"]

log = logging.getLogger(__name__)

# The bound graph names the input "<folder>/<sha256>.<ext>", so the graph (and its hash) says which
# picture it edits. It is uploaded as "<folder>/<instance>-<slot>.<ext>" instead: ComfyUI has no way to
# delete an upload, so each render in flight on a backend overwrites a slot of its own, and the files
# there stay as many as the renders that ran at once, not as many as ever ran. (LoadImage hashes the
# file, so ComfyUI's cache still tells one picture from another.)
UPLOAD_FOLDER = "likeness"
# Failures of the infrastructure, not of the picture: the same job (same seed) may simply run again.
_INFRASTRUCTURE = ("unreachable", "interrupted")

INFRA_RETRIES = Counter("likeness_renderer_infra_retries_total",
                        "Renders run again with the same seed after the backend lost them, by failure kind", ["kind"])


class _NoBackend(RenderError):
    """No backend could take the job, even after waiting for one."""


@dataclass
class _Wait:
    """One job's wait for a backend so far."""

    limit_s: float
    waited_s: float = 0.0
    probes: int = 0
    # Seconds spent in the scheduler's queue (backends up, all busy) and the job's place in it.
    queued_s: float = 0.0
    arrival: float = 0.0


class ComfyUIEngine:
    """Renders on the pool's backends; `http` is shared and closed by its owner."""

    name = "comfyui"

    def __init__(self, pool: BackendPool, templates: TemplateLibrary, http: httpx.AsyncClient, *,
                 timeouts: Timeouts, deadline_s: float, backend_wait_s: float = 0.0, infra_retries: int = 2,
                 instance: str = "renderer", backend_slots: int = 1, affinity_skips: int = 2) -> None:
        self.pool = pool
        self.scheduler = Scheduler(pool, slots=backend_slots, affinity_skips=affinity_skips)
        self.templates = templates
        self.http = http
        self.timeouts = timeouts
        self.deadline_s = deadline_s
        self.backend_wait_s = backend_wait_s
        self.infra_retries = infra_retries
        # Backends seen to lack SaveImageWebsocket: their pictures come as files.
        self._file_output: set[str] = set()
        self._instance = instance
        self._busy_slots: dict[str, set[int]] = {}

    async def render(self, job: RenderStep, input_image: bytes | None, progress: Progress, *,
                     reference_image: bytes | None = None) -> RenderOutput:
        """Render `job`; a backend that cannot be reached is marked down and the next one is tried.

        If none can take it, wait for one (time spent waiting does not count against the render deadline);
        if the backend loses it after queueing, run it again with the same seed (`infra_retries`).
        """
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + min(job.deadline_s or self.deadline_s, self.deadline_s)
        template = self.templates.get(job.template)
        submission, workflow_hash = self._submission(job, template.edit, input_image, reference_image)
        wait = _Wait(self.backend_wait_s, arrival=self.scheduler.arrival())
        first: RenderError | None = None
        for retry in range(self.infra_retries + 1):
            try:
                result, url = await self._render_once(job, submission, deadline, wait, progress)
                break
            except RenderError as exc:
                # No backend to be had after the wait: asking again would only wait again.
                last_chance = (exc.kind not in _INFRASTRUCTURE or isinstance(exc, _NoBackend)
                               or retry == self.infra_retries or loop.time() >= deadline)
                if last_chance and first is not None:
                    # Say what happened first: that is what the operator has to fix.
                    exc.reason = f"{first.reason}; rendered again {retry} time(s) with the same seed: {exc.reason}"
                if last_chance:
                    raise
                first = first or exc
                INFRA_RETRIES.labels(exc.kind).inc()
                log.warning("chain %s step %s attempt %s: %s (%s); rendering it again with the same seed (%d of %d)",
                            job.chain_id, job.step, job.attempt, exc.reason, exc.kind, retry + 1, self.infra_retries)
        timings = {**result.timings, "backend_wait": round(wait.waited_s * 1000, 1),
                   "schedule_wait": round(wait.queued_s * 1000, 1), "total": round((loop.time() - began) * 1000, 1)}
        return RenderOutput(result.image, result.media_type, workflow_hash, url, self.name, timings)

    async def _render_once(self, job: RenderStep, submission: Submission, deadline: float, wait: _Wait,
                           progress: Progress) -> tuple[ClientResult, str]:
        loop = asyncio.get_running_loop()
        user = job.user_id or f"chain:{job.chain_id}"
        urls = self.pool.candidates(job.model, job.style)
        failures: dict[str, str] = {}
        tried: set[str] = set()
        while True:
            queued = loop.time()
            url = await self.scheduler.acquire(user, job.model, [u for u in urls if u not in tried], wait.arrival,
                                               on_place=lambda ahead: _tell(progress, Queued(ahead)))
            wait.queued_s += loop.time() - queued
            if url is None:
                with QUEUE_DEPTH.track_inprogress():
                    urls = await self._wait_for_backend(job, wait, failures, progress)
                if not urls:
                    raise _NoBackend("unreachable", unreachable_reason(wait.waited_s, wait.limit_s, failures))
                tried.clear()
                continue
            try:
                remaining = deadline + wait.waited_s + wait.queued_s - loop.time()
                if remaining <= 0:
                    raise RenderError("timeout", "render deadline passed while looking for a backend: "
                                      + "; ".join(failures.values()))
                client = ComfyUIClient(url, self.http, self.timeouts)
                async with self._slot(url, submission) as sent:
                    try:
                        result = await client.render(sent, deadline_s=remaining, on_update=progress,
                                                     websocket_output=url not in self._file_output)
                    except BackendUnreachable as exc:
                        self.pool.mark_down(url, exc.reason)
                        failures[url] = exc.reason
                        tried.add(url)
                        continue
                    except RenderError as exc:
                        if exc.kind == "unreachable":  # went away after queueing: tell the pool
                            self.pool.mark_down(url, exc.reason)
                        raise
            finally:
                self.scheduler.release(url, user)
            if not result.websocket_output:
                self._file_output.add(url)
            if wait.probes:
                log.info("chain %s step %s attempt %s: backend %s took the job after %.1f s of waiting",
                         job.chain_id, job.step, job.attempt, url, wait.waited_s)
            return result, url

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

    @contextlib.asynccontextmanager
    async def _slot(self, url: str, submission: Submission) -> AsyncIterator[Submission]:
        """The submission with its input uploaded to the lowest upload slot free on `url` while it renders."""
        if submission.input_ref is None:
            yield submission
            return
        busy = self._busy_slots.setdefault(url, set())
        slot = next(i for i in range(len(busy) + 1) if i not in busy)
        busy.add(slot)
        ext = submission.input_ref.rpartition(".")[2]
        try:
            yield replace(submission, upload_as=f"{UPLOAD_FOLDER}/{self._instance}-{slot}.{ext}")
        finally:
            busy.discard(slot)

    def _submission(self, job: RenderStep, edit: bool, input_image: bytes | None,
                    reference_image: bytes | None = None) -> tuple[Submission, str]:
        template = self.templates.get(job.template)
        if not edit:
            bound = template.bind(job, input_ref=None)
            return Submission(bound.graph, bound.output_node), bound.workflow_hash
        if input_image is None:
            raise RenderError("validation", f"template {job.template!r} edits a picture, and the job brings none "
                                            "(a text-to-image job needs a '*_t2i' template)")
        ext, media_type = _sniff(input_image)
        ref = f"{UPLOAD_FOLDER}/{hashlib.sha256(input_image).hexdigest()}.{ext}"
        reference: dict = {}
        if template.reference_node is not None:
            if reference_image is None:
                raise RenderError("validation", f"template {job.template!r} compares with the character's reference "
                                                "picture, and the job brings none")
            # Named by content, not by slot: a reference is one picture per character, so these files stay few.
            ref_ext, ref_type = _sniff(reference_image)
            reference = {"reference_node": template.reference_node, "reference_image": reference_image,
                         "reference_ref": f"{UPLOAD_FOLDER}/{hashlib.sha256(reference_image).hexdigest()}.{ref_ext}",
                         "reference_media_type": ref_type}
        bound = template.bind(job, input_ref=ref, reference_ref=reference.get("reference_ref"))
        submission = Submission(bound.graph, bound.output_node, bound.input_node, input_image, ref, media_type,
                                **reference)
        return submission, bound.workflow_hash


def _sniff(data: bytes) -> tuple[str, str]:
    kind = image_kind(data)
    if kind is None:
        raise RenderError("validation", "the input image is not a PNG, JPEG or WebP picture")
    return kind


async def _tell(progress: Progress, update: RenderUpdate) -> None:
    # Progress is a courtesy: a failing listener must never fail the render.
    try:
        await progress(update)
    except Exception:  # noqa: BLE001
        log.exception("progress listener failed")
