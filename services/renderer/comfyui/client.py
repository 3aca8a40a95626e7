"""One render on one ComfyUI backend: socket first, upload, queue, follow, read history, fetch the image.

Everything before the prompt is queued fails as `BackendUnreachable` (another backend may take the
job); after that, failures are final for this backend, and an unfinished prompt is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import uuid
from dataclasses import dataclass, field

import httpx

from services.renderer.comfyui.http import ComfyHTTP
from services.renderer.comfyui.protocol import parse_binary, parse_text
from services.renderer.comfyui.replies import images_of, outcome_of
from services.renderer.comfyui.socket import ComfySocket, SocketClosed
from services.renderer.comfyui.tracker import PromptTracker
from services.renderer.engine import Progress, RenderUpdate
from services.renderer.errors import BackendUnreachable, RenderError

__all__ = ["ClientResult", "ComfyUIClient", "Submission", "Timeouts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timeouts:
    """Explicit limits; ComfyUI can stall small requests for seconds under load, so requests get >= 10 s (§7.13)."""

    connect_s: float = 5.0
    request_s: float = 30.0
    # Socket silence after which /history and /queue are asked (lost frames, a silenced socket).
    poll_s: float = 5.0
    reconnect_delays_s: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)
    # How long reopening may keep failing (the backend died mid-render) before the attempt fails as
    # unreachable; None: until the render deadline. A restarted ComfyUI has lost the prompt anyway.
    reconnect_give_up_s: float | None = None
    # Attempts to read history after `executing: null`, for the history race (§6.8).
    history_attempts: int = 20


@dataclass(frozen=True)
class Submission:
    """A bound graph, which node is the output, and the input image for its LoadImage (if any)."""

    graph: dict
    output_node: str
    input_node: str | None = None
    input_image: bytes | None = None
    input_ref: str | None = None  # "<subfolder>/<name>" the graph already names
    input_media_type: str = "image/png"


@dataclass(frozen=True)
class ClientResult:
    image: bytes
    media_type: str
    prompt_id: str
    timings: dict[str, float] = field(default_factory=dict)


class ComfyUIClient:
    """Renders submissions on the backend at `base_url`."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, timeouts: Timeouts | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self.api = ComfyHTTP(self.base_url, http, request_timeout_s=self.timeouts.request_s,
                             connect_timeout_s=self.timeouts.connect_s)

    async def render(self, submission: Submission, *, deadline_s: float, on_update: Progress) -> ClientResult:
        """Run the submission to its image within `deadline_s`, raising `RenderError`."""
        loop = asyncio.get_running_loop()
        marks: dict[str, float] = {"begin": loop.time()}
        prompt_id, queued = str(uuid.uuid4()), False
        tracker = PromptTracker(prompt_id)
        sock = ComfySocket(self.base_url, uuid.uuid4().hex, connect_timeout_s=self.timeouts.connect_s)
        try:
            async with asyncio.timeout(deadline_s):
                # The socket opens before the POST: nothing is replayed, and tiny prompts finish in ms (§7.3).
                graph = await self._prepare(sock, submission)
                marks["uploaded"] = loop.time()
                queued = await self._queue(graph, sock.client_id, prompt_id, submission.output_node)
                marks["queued"] = loop.time()
                await self._follow(sock, tracker, on_update, marks)
                marks["done"] = loop.time()
                image, media_type = await self._fetch(tracker, submission.output_node)
                marks["fetched"] = loop.time()
        except TimeoutError:
            raise RenderError("timeout", f"render did not finish within {deadline_s:.0f} s on {self.base_url}",
                              node_id=tracker.node, backend=self.base_url) from None
        except RenderError as exc:
            exc.at(self.base_url)
            raise
        finally:
            await sock.close()
            if queued and not tracker.done:
                await self._cancel(prompt_id)
        return ClientResult(image, media_type, prompt_id, _timings(marks))

    async def _prepare(self, sock: ComfySocket, sub: Submission) -> dict:
        """Open the socket and upload the input; any failure here means nothing runs on this backend."""
        try:
            await sock.open()
            if sub.input_image is None or sub.input_node is None or sub.input_ref is None:
                return sub.graph
            folder, _, name = sub.input_ref.rpartition("/")
            ref = await self.api.upload_image(sub.input_image, name, folder, sub.input_media_type)
        except BackendUnreachable:
            raise
        except RenderError as exc:
            raise BackendUnreachable(f"{self.base_url} failed before queueing: {exc.reason}",
                                     backend=self.base_url) from exc
        if ref == sub.input_ref:
            return sub.graph
        # overwrite=true should keep our name; if the server renamed it anyway, follow its answer (§7.8).
        graph = copy.deepcopy(sub.graph)
        graph[sub.input_node]["inputs"]["image"] = ref
        return graph

    async def _queue(self, graph: dict, client_id: str, prompt_id: str, output_node: str) -> bool:
        try:
            await self.api.queue_prompt(graph, client_id=client_id, prompt_id=prompt_id, output_node=output_node)
        except RenderError as exc:
            # A timed-out POST may have queued it: cancel by our own prompt id. Other failures queued nothing.
            if exc.kind == "timeout":
                await self._cancel(prompt_id)
            raise
        return True

    async def _follow(self, sock: ComfySocket, tracker: PromptTracker, on_update: Progress,
                      marks: dict[str, float]) -> None:
        loop = asyncio.get_running_loop()
        while not tracker.done:
            try:
                raw = await sock.recv(self.timeouts.poll_s)
            except SocketClosed:
                log.warning("%s: websocket closed during prompt %s; reconnecting", self.base_url, tracker.prompt_id)
                await self._reconnect(sock)
                await self._reconcile(tracker)
                continue
            if raw is None:
                await self._reconcile(tracker)
                continue
            frame = parse_binary(raw) if isinstance(raw, bytes) else parse_text(raw)
            for update in tracker.feed(frame):
                await _emit(on_update, update)
            if tracker.started and "started" not in marks:
                marks["started"] = loop.time()

    async def _reconnect(self, sock: ComfySocket) -> None:
        """Reopen with the same client id until it works, for at most `reconnect_give_up_s` (and the deadline)."""
        loop = asyncio.get_running_loop()
        began, give_up = loop.time(), self.timeouts.reconnect_give_up_s
        for attempt in range(1_000_000):
            delays = self.timeouts.reconnect_delays_s
            await asyncio.sleep(delays[min(attempt, len(delays) - 1)])
            try:
                await sock.reopen()
                return
            except BackendUnreachable as exc:
                log.info("%s: reconnect attempt %d failed: %s", self.base_url, attempt + 1, exc.reason)
                if give_up is not None and loop.time() - began >= give_up:
                    raise RenderError("unreachable", f"{self.base_url} went away during the render and was not "
                                                     f"back within {give_up:g} s: {exc.reason}") from None

    async def _reconcile(self, tracker: PromptTracker) -> None:
        """Ask /history (then /queue) whether the prompt ended while we were not listening."""
        try:
            if await self._take_history(tracker):
                return
            if await self.api.in_queue(tracker.prompt_id) or await self._take_history(tracker):
                return
        except RenderError as exc:
            log.info("%s: could not check prompt %s: %s", self.base_url, tracker.prompt_id, exc.reason)
            return
        tracker.done = True
        tracker.failure = RenderError("interrupted", f"prompt {tracker.prompt_id} vanished from the queue "
                                                     "(deleted, cleared, or the server restarted)")

    async def _take_history(self, tracker: PromptTracker) -> bool:
        entry = await self.api.history(tracker.prompt_id)
        if entry is None:
            return False
        outcome = outcome_of(entry)
        tracker.done = True
        tracker.failure = tracker.failure or outcome.failure
        tracker.outputs.update(outcome.outputs)
        return True

    async def _fetch(self, tracker: PromptTracker, output_node: str) -> tuple[bytes, str]:
        if tracker.failure is not None:
            raise tracker.failure
        outputs = dict(tracker.outputs)
        for attempt in range(self.timeouts.history_attempts):
            entry = await self.api.history(tracker.prompt_id)
            if entry is not None:
                outcome = outcome_of(entry)
                if outcome.failure is not None:
                    raise outcome.failure
                outputs.update(outcome.outputs)
                break
            await asyncio.sleep(0.05 * (attempt + 1))
        files = images_of(outputs, output_node)
        if not files:
            raise RenderError("execution", f"the output node {output_node} produced no image", node_id=output_node)
        return await self.api.view(files[0])

    async def _cancel(self, prompt_id: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.api.cancel(prompt_id), self.timeouts.connect_s)


async def _emit(on_update: Progress, update: RenderUpdate) -> None:
    # Progress is a courtesy: a failing listener must never fail the render.
    try:
        await on_update(update)
    except Exception:  # noqa: BLE001
        log.exception("progress listener failed")


def _timings(marks: dict[str, float]) -> dict[str, float]:
    spans = {"upload": ("begin", "uploaded"), "queue": ("uploaded", "started"), "execute": ("started", "done"),
             "wait": ("queued", "done"), "fetch": ("done", "fetched"), "total": ("begin", "fetched")}
    return {name: round((marks[b] - marks[a]) * 1000, 1) for name, (a, b) in spans.items() if a in marks and b in marks}
