"""One render on one ComfyUI backend: socket first, upload, queue, follow, read history, fetch the image.

Everything before the prompt is queued fails as `BackendUnreachable` (another backend may take the
job); after that, failures are final for this backend, and an unfinished prompt is cancelled.

Nothing is left behind on the backend that can be avoided: the output node becomes a
`SaveImageWebsocket` (the picture comes over the socket and no file is written; a server without that
node is asked again with a file output), the history entry is deleted once read, and a file output
gets a prefix of its own prompt id. That prefix is also what keeps ComfyUI's cache from answering a
repeated prompt with an old file name that may be gone (PROTOCOL.md §7.7): only the save node runs
again, from the cached picture, which is the same picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import re
import uuid
from dataclasses import dataclass, field

import httpx

from services.renderer.comfyui.http import ComfyHTTP
from services.renderer.comfyui.protocol import TextFrame, parse_binary, parse_text
from services.renderer.comfyui.replies import images_of, outcome_of
from services.renderer.comfyui.socket import ComfySocket, SocketClosed
from services.renderer.comfyui.tracker import PromptTracker
from services.renderer.engine import Progress, Queued, RenderUpdate
from services.renderer.errors import BackendUnreachable, RenderError

__all__ = ["WEBSOCKET_OUTPUT", "ClientResult", "ComfyUIClient", "Submission", "Timeouts"]

# The output node that sends its picture over the socket (upstream custom_nodes/websocket_image_save.py,
# loaded by default; never cached, PROTOCOL.md §3.2, §6.4).
WEBSOCKET_OUTPUT = "SaveImageWebsocket"
_FILE_OUTPUTS = ("SaveImage", "PreviewImage")

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
    # The name to upload the input as, when not `input_ref` (a reused slot: see ComfyUIEngine).
    upload_as: str | None = None
    # A second picture for a LoadImage titled `reference_image` (a face-restore template), uploaded as named.
    reference_node: str | None = None
    reference_image: bytes | None = None
    reference_ref: str | None = None
    reference_media_type: str = "image/png"


@dataclass(frozen=True)
class ClientResult:
    image: bytes
    media_type: str
    prompt_id: str
    timings: dict[str, float] = field(default_factory=dict)
    # Whether the picture came over the socket; False when the backend lacks SaveImageWebsocket.
    websocket_output: bool = True


class ComfyUIClient:
    """Renders submissions on the backend at `base_url`."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, timeouts: Timeouts | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self.api = ComfyHTTP(self.base_url, http, request_timeout_s=self.timeouts.request_s,
                             connect_timeout_s=self.timeouts.connect_s)

    async def render(self, submission: Submission, *, deadline_s: float, on_update: Progress,
                     websocket_output: bool = True) -> ClientResult:
        """Run the submission to its image within `deadline_s`, raising `RenderError`."""
        loop = asyncio.get_running_loop()
        marks: dict[str, float] = {"begin": loop.time()}
        runs: list[PromptTracker] = []  # every prompt queued here: cancelled or forgotten at the end
        sock = ComfySocket(self.base_url, uuid.uuid4().hex, connect_timeout_s=self.timeouts.connect_s)
        try:
            async with asyncio.timeout(deadline_s):
                # The socket opens before the POST: nothing is replayed, and tiny prompts finish in ms (§7.3).
                graph = await self._prepare(sock, submission)
                marks["uploaded"] = loop.time()
                for run in (1, 2):
                    tracker, websocket_output = await self._submit(graph, submission.output_node, sock,
                                                                   websocket_output)
                    runs.append(tracker)
                    marks.setdefault("queued", loop.time())
                    # No GET /queue here: the `status` frame ComfyUI sends for the put (§3.1) asks it.
                    await self._follow(sock, tracker, on_update, marks)
                    marks["done"] = loop.time()
                    if run == 1 and websocket_output and tracker.failure is None and not tracker.images:
                        # The picture went out while our socket was down, and it is stored nowhere. Asked
                        # again, ComfyUI answers from its cache and runs only the websocket node: same picture.
                        log.info("%s: the picture of prompt %s was sent while the socket was down; asking for "
                                 "it again", self.base_url, tracker.prompt_id)
                        continue
                    image, media_type = await self._fetch(tracker, submission.output_node)
                    break
                marks["fetched"] = loop.time()
        except TimeoutError:
            raise RenderError("timeout", f"render did not finish within {deadline_s:.0f} s on {self.base_url}",
                              node_id=runs[-1].node if runs else None, backend=self.base_url) from None
        except RenderError as exc:
            raise _named(exc, submission.graph).at(self.base_url) from None
        finally:
            await sock.close()
            for tracker in runs:
                await (self._forget(tracker.prompt_id) if tracker.done else self._cancel(tracker.prompt_id))
        return ClientResult(image, media_type, runs[-1].prompt_id, _timings(marks), websocket_output)

    async def _submit(self, graph: dict, output_node: str, sock: ComfySocket,
                      websocket_output: bool) -> tuple[PromptTracker, bool]:
        """Queue the graph under a new prompt id; a server without SaveImageWebsocket gets a file output."""
        prompt_id = str(uuid.uuid4())
        try:
            await self._queue(_for_server(graph, output_node, prompt_id, websocket_output), sock.client_id,
                              prompt_id, output_node)
        except RenderError as exc:
            if not (websocket_output and _lacks_websocket_output(exc)):
                raise
            log.warning("%s has no %s node: its pictures are saved as files and fetched", self.base_url,
                        WEBSOCKET_OUTPUT)
            websocket_output = False
            await self._queue(_for_server(graph, output_node, prompt_id, False), sock.client_id, prompt_id,
                              output_node)
        return PromptTracker(prompt_id, graph, websocket_output=output_node if websocket_output else None), \
            websocket_output

    async def _prepare(self, sock: ComfySocket, sub: Submission) -> dict:
        """Open the socket and upload the input; any failure here means nothing runs on this backend."""
        try:
            await sock.open()
            reference = None
            if sub.reference_image is not None and sub.reference_node is not None and sub.reference_ref is not None:
                folder, _, name = sub.reference_ref.rpartition("/")
                reference = await self.api.upload_image(sub.reference_image, name, folder, sub.reference_media_type)
            if sub.input_image is None or sub.input_node is None or sub.input_ref is None:
                return sub.graph
            folder, _, name = (sub.upload_as or sub.input_ref).rpartition("/")
            ref = await self.api.upload_image(sub.input_image, name, folder, sub.input_media_type)
        except BackendUnreachable:
            raise
        except RenderError as exc:
            raise BackendUnreachable(f"{self.base_url} failed before queueing: {exc.reason}",
                                     backend=self.base_url) from exc
        if ref == sub.input_ref and reference == sub.reference_ref:
            return sub.graph
        # Uploaded under another name (a slot), or renamed by the server despite overwrite=true (§7.8).
        graph = copy.deepcopy(sub.graph)
        graph[sub.input_node]["inputs"]["image"] = ref
        if reference is not None and sub.reference_node is not None:
            graph[sub.reference_node]["inputs"]["image"] = reference
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
            if isinstance(frame, TextFrame) and frame.type == "status" and not tracker.started:
                await self._tell_position(tracker, on_update)  # the queue moved (§3.1): where are we now?
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

    async def _tell_position(self, tracker: PromptTracker, on_update: Progress) -> None:
        """Publish how many prompts are ahead of ours while it waits in the backend's queue."""
        try:
            ahead = await self.api.ahead_of(tracker.prompt_id)
        except RenderError as exc:
            log.debug("%s: queue position of %s unknown: %s", self.base_url, tracker.prompt_id, exc.reason)
            return
        if ahead is not None and not tracker.started:
            await _emit(on_update, Queued(ahead))

    async def _fetch(self, tracker: PromptTracker, output_node: str) -> tuple[bytes, str]:
        if tracker.failure is not None:
            raise tracker.failure
        if tracker.images:
            media_type, image = tracker.images[0]
            return image, media_type
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
        if not files and tracker.websocket_output is not None:
            raise RenderError("interrupted", f"the picture of output node {output_node} was sent twice while the "
                                             "socket was down, and is stored nowhere", node_id=output_node)
        if not files:
            raise RenderError("execution", f"the output node {output_node} produced no image", node_id=output_node)
        return await self.api.view(files[0])

    async def _forget(self, prompt_id: str) -> None:
        # Housekeeping: a failure here must not fail a render that has its picture.
        try:
            await asyncio.wait_for(self.api.forget(prompt_id), self.timeouts.connect_s)
        except (RenderError, TimeoutError) as exc:
            log.debug("%s: history entry of %s not deleted: %s", self.base_url, prompt_id, exc)

    async def _cancel(self, prompt_id: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.api.cancel(prompt_id), self.timeouts.connect_s)


async def _emit(on_update: Progress, update: RenderUpdate) -> None:
    # Progress is a courtesy: a failing listener must never fail the render.
    try:
        await on_update(update)
    except Exception:  # noqa: BLE001
        log.exception("progress listener failed")


def _for_server(graph: dict, output_node: str, prompt_id: str, websocket_output: bool) -> dict:
    """The graph as sent: the output over the socket, or into a file named after this prompt."""
    node = graph.get(output_node)
    if not isinstance(node, dict) or node.get("class_type") not in _FILE_OUTPUTS:
        return graph
    sent = copy.deepcopy(graph)
    inputs = sent[output_node].setdefault("inputs", {})
    if websocket_output:
        sent[output_node] = {"class_type": WEBSOCKET_OUTPUT, "inputs": {"images": inputs.get("images")},
                             **({"_meta": node["_meta"]} if "_meta" in node else {})}
    elif sent[output_node]["class_type"] == "SaveImage":
        inputs["filename_prefix"] = f"likeness/{prompt_id}"
    return sent


def _lacks_websocket_output(error: RenderError) -> bool:
    # ComfyUI: 400 invalid_prompt "Cannot execute because node SaveImageWebsocket does not exist."
    return error.kind == "validation" and WEBSOCKET_OUTPUT in error.reason


def _named(error: RenderError, graph: dict) -> RenderError:
    """The error with the node's type filled in from the graph we sent, when the server did not name it."""
    node = graph.get(error.node_id) if error.node_id is not None else None
    if error.node_type is None and isinstance(node, dict) and isinstance(node.get("class_type"), str):
        error.node_type = node["class_type"]
        named = f"node {error.node_id} ({error.node_type})"
        if f"node {error.node_id} " in error.reason + " " and named not in error.reason:
            error.reason = re.sub(rf"\bnode {re.escape(error.node_id)}\b", named, error.reason, count=1)
        if named not in error.reason:
            error.reason += f" [{named}]"
    return error


def _timings(marks: dict[str, float]) -> dict[str, float]:
    spans = {"upload": ("begin", "uploaded"), "queue": ("uploaded", "started"), "execute": ("started", "done"),
             "wait": ("queued", "done"), "fetch": ("done", "fetched"), "total": ("begin", "fetched")}
    return {name: round((marks[b] - marks[a]) * 1000, 1) for name, (a, b) in spans.items() if a in marks and b in marks}
