"""The RunPod engine: the job's bound ComfyUI workflow, run on a RunPod serverless endpoint with worker-comfyui.

POST `<endpoint>/run`, poll GET `/status/<id>` (pauses growing to 5 s), read the image from the job's output;
at the deadline, or when the render is given up, POST `/cancel/<id>`. Until /run has accepted the job
nothing runs there, so failures raise `BackendUnreachable`; after that they are final for the attempt.

What RunPod and worker-comfyui answer, and where that was read, is in `services.renderer.runpod_replies`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
from datetime import UTC, datetime

import httpx

from contracts.render import RenderStep
from services.renderer.engine import Progress, RenderOutput, RenderUpdate, Tick
from services.renderer.errors import BackendUnreachable, RenderError
from services.renderer.images import image_kind
from services.renderer.runpod_replies import (MAX_POLL_S, RUNNING, TERMINAL, JobState, OutputFile, failure,
                                              job_id_of, next_poll_in, output_prefix, poll_refusal, read_output,
                                              retry_after_s, run_refusal)
from services.renderer.templates import TemplateLibrary

__all__ = ["RUN_BODY_MAX_BYTES", "RunPodEngine"]

log = logging.getLogger(__name__)

RUN_BODY_MAX_BYTES = 10_000_000
# A short Retry-After on /run is worth waiting for; a long one means "go elsewhere".
_SUBMIT_RETRIES, _SUBMIT_WAIT_MAX_S = 2, 5.0
_CANCEL_TIMEOUT_S = 5.0
_MIN_EXECUTION_TIMEOUT_MS = 5001


class _Transient(Exception):
    """A poll that failed in a way the next poll may not (connection, 429, 5xx, garbled body)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class RunPodEngine:
    """Renders on one RunPod serverless endpoint (`endpoint_url` = `.../v2/<endpoint id>`); `http` is the caller's."""

    name = "runpod"

    def __init__(self, templates: TemplateLibrary, http: httpx.AsyncClient, *, endpoint_url: str, api_key: str,
                 deadline_s: float, poll_interval_s: float = 1.0, request_timeout_s: float = 30.0) -> None:
        self.templates = templates
        self.http = http
        self.endpoint_url = endpoint_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.deadline_s = deadline_s
        self.poll_interval_s = poll_interval_s
        self.request_timeout_s = request_timeout_s

    async def render(self, job: RenderStep, input_image: bytes | None, progress: Progress, *,
                     reference_image: bytes | None = None) -> RenderOutput:
        """Run `job` on the endpoint; raises RenderError (BackendUnreachable if the endpoint took nothing)."""
        try:
            return await self._render(job, input_image, progress, reference_image)
        except RenderError as exc:
            raise exc.at(self.endpoint_url) from None

    async def _render(self, job: RenderStep, input_image: bytes | None, progress: Progress,
                      reference_image: bytes | None = None) -> RenderOutput:
        loop = asyncio.get_running_loop()
        began = loop.time()
        budget = min(job.deadline_s or self.deadline_s, self.deadline_s)
        deadline = began + budget
        body, workflow_hash, prefix = self._request(job, input_image, budget, reference_image)
        job_id = await self._submit(body, deadline)
        submitted = loop.time()
        log.info("chain %s step %s attempt %s: RunPod job %s queued on %s", job.chain_id, job.step, job.attempt,
                 job_id, self.endpoint_url)
        try:
            state = await self._follow(job_id, budget, deadline, progress)
        except asyncio.CancelledError:
            # The renderer gave this attempt up (shutdown, lost lease): stop the billed worker too.
            await asyncio.shield(self._cancel(job_id))
            raise
        fetching = loop.time()
        image, media_type = await self._image(read_output(state.output, prefix), deadline)
        done = loop.time()
        timings = {"submit": _ms(submitted - began), "fetch": _ms(done - fetching), "total": _ms(done - began)}
        timings |= {k: v for k, v in (("queue", state.delay_ms), ("execute", state.execution_ms)) if v is not None}
        return RenderOutput(image, media_type, workflow_hash, self.endpoint_url, self.name, timings, cost_usd=None)

    def _request(self, job: RenderStep, input_image: bytes | None, budget: float,
                 reference_image: bytes | None = None) -> tuple[bytes, str, str | None]:
        """The /run body, the bound workflow's hash, and the file name stem of the output node's images."""
        template = self.templates.get(job.template)
        ref, reference, images = None, None, []
        if template.edit:
            if input_image is None:
                raise RenderError("validation", f"template {job.template!r} edits a picture, and the job brings none")
            ref = _named_image(input_image, "the input image", images)
        if template.reference_node is not None:
            if reference_image is None:
                raise RenderError("validation", f"template {job.template!r} compares with the character's reference "
                                                "picture, and the job brings none")
            reference = _named_image(reference_image, "the reference image", images)
        bound = template.bind(job, input_ref=ref, reference_ref=reference)
        payload = {"input": {"workflow": bound.graph, **({"images": images} if images else {})},
                   # Should our /cancel be lost, RunPod still stops the (billed) worker near our deadline.
                   "policy": {"executionTimeout": max(_MIN_EXECUTION_TIMEOUT_MS, math.ceil(budget * 1000))}}
        body = json.dumps(payload, separators=(",", ":")).encode()
        if len(body) > RUN_BODY_MAX_BYTES:
            raise RenderError("validation", f"the job is {len(body) / 1e6:.1f} MB as a RunPod request, and /run takes "
                              "at most 10 MB; use a smaller input image")
        return body, bound.workflow_hash, output_prefix(bound.graph, bound.output_node)

    async def _submit(self, body: bytes, deadline: float) -> str:
        """POST /run and return the job id; any failure means nothing was queued (BackendUnreachable)."""
        loop, headers = asyncio.get_running_loop(), {**self._headers, "Content-Type": "application/json"}
        for attempt in range(_SUBMIT_RETRIES + 1):
            try:
                response = await self.http.post(f"{self.endpoint_url}/run", content=body, headers=headers,
                                                timeout=self._timeout(deadline))
            except httpx.TransportError as exc:
                raise BackendUnreachable(f"cannot reach RunPod at {self.endpoint_url}: {_describe(exc)}") from None
            if response.status_code != 429:
                break
            wait = retry_after_s(response.headers.get("retry-after"), datetime.now(UTC))
            if wait is None or wait > _SUBMIT_WAIT_MAX_S or attempt == _SUBMIT_RETRIES or loop.time() + wait >= deadline:
                after = f", retry after {wait:g} s" if wait is not None else ""
                raise BackendUnreachable(f"RunPod endpoint {self.endpoint_url} takes no new jobs now (HTTP 429{after})")
            await asyncio.sleep(wait)
        if response.is_error:
            raise run_refusal(response.status_code, _text(response), self.endpoint_url)
        if (job_id := job_id_of(_json(response))) is None:
            raise BackendUnreachable(f"RunPod answered POST /run without a job id: {_text(response)}")
        return job_id

    async def _follow(self, job_id: str, budget: float, deadline: float, progress: Progress) -> JobState:
        """Poll until the job is COMPLETED (its state), ends otherwise (RenderError) or the deadline passes."""
        loop = asyncio.get_running_loop()
        interval = pause = min(self.poll_interval_s, MAX_POLL_S)
        status, trouble, started = "IN_QUEUE", "", False
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(pause, remaining))
            interval = pause = next_poll_in(interval)
            try:
                state = await self._status(job_id, deadline)
            except _Transient as exc:
                trouble, pause = f"; last poll: {exc.reason}", max(interval, exc.retry_after or 0.0)
                log.warning("RunPod job %s on %s: %s; polling again in %.1f s", job_id, self.endpoint_url,
                            exc.reason, pause)
                continue
            status, trouble = state.status, ""
            # A job may go from IN_QUEUE to COMPLETED between two polls: the page still sees it start.
            if not started and (status in RUNNING or status == "COMPLETED"):
                started = True
                await _tell(progress, Tick(0, 1))
            if status == "COMPLETED":
                await _tell(progress, Tick(1, 1))
                return state
            if status in TERMINAL:
                raise failure(state, job_id)
        await self._cancel(job_id)
        raise RenderError("timeout", f"RunPod job {job_id} was still {status} after {budget:g} s{trouble}; "
                          "cancelled it")

    async def _status(self, job_id: str, deadline: float) -> JobState:
        try:
            response = await self.http.get(f"{self.endpoint_url}/status/{job_id}", headers=self._headers,
                                           timeout=self._timeout(deadline))
        except httpx.TransportError as exc:
            raise _Transient(_describe(exc)) from None
        if response.is_error:
            if (refusal := poll_refusal(response.status_code, _text(response), job_id)) is not None:
                raise refusal
            after = retry_after_s(response.headers.get("retry-after"), datetime.now(UTC))
            raise _Transient(f"HTTP {response.status_code}", after)
        try:
            return JobState.parse(response.json())
        except ValueError as exc:
            raise _Transient(f"unreadable status answer ({exc})") from None

    async def _cancel(self, job_id: str) -> None:
        """Best effort: a job we no longer wait for should stop costing money."""
        try:
            response = await self.http.post(f"{self.endpoint_url}/cancel/{job_id}", headers=self._headers,
                                            timeout=min(self.request_timeout_s, _CANCEL_TIMEOUT_S))
            if response.is_error:
                log.warning("RunPod refused to cancel job %s: HTTP %s %s", job_id, response.status_code,
                            _text(response))
        except httpx.HTTPError as exc:
            log.warning("could not cancel RunPod job %s on %s: %s", job_id, self.endpoint_url, _describe(exc))

    async def _image(self, file: OutputFile, deadline: float) -> tuple[bytes, str]:
        data = file.data
        if data is None and file.url is not None:
            where = file.url.split("?", 1)[0]  # a presigned URL's query is a credential: keep it out of reasons
            try:
                # No RunPod key here: it is not S3's, and S3 refuses a request that carries two kinds of auth.
                response = await self.http.get(file.url, timeout=self._timeout(deadline))
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise RenderError("execution", f"cannot fetch the output image from {where}: "
                                  f"{_describe(exc).split('?', 1)[0]}") from None
            data = response.content
        kind = image_kind(data or b"")
        if kind is None:
            raise RenderError("execution", f"the output {file.filename or 'image'} is not a PNG, JPEG or WebP picture")
        return data or b"", kind[1]

    def _timeout(self, deadline: float) -> httpx.Timeout:
        # Never wait past the deadline, but leave a last poll enough time to be answered.
        remaining = deadline - asyncio.get_running_loop().time()
        return httpx.Timeout(max(1.0, min(self.request_timeout_s, remaining)))


async def _tell(progress: Progress, update: RenderUpdate) -> None:
    # Progress is a courtesy: a failing listener must never fail the render.
    try:
        await progress(update)
    except Exception:
        log.exception("progress listener failed")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _text(response: httpx.Response) -> str:
    return " ".join(response.text.split())[:300] or "(empty body)"


def _named_image(data: bytes, what: str, images: list[dict[str, str]]) -> str:
    """Add `data` to the /run body's images, named by content (so the bound graph, and its hash, says which
    picture it reads); its name."""
    kind = image_kind(data)
    if kind is None:
        raise RenderError("validation", f"{what} is not a PNG, JPEG or WebP picture")
    name = f"{hashlib.sha256(data).hexdigest()}.{kind[0]}"
    images.append({"name": name, "image": base64.b64encode(data).decode("ascii")})
    return name


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000, 1)
