"""Following one prompt through the websocket frames (pure): progress, previews, output images, failure, done.

Progress is graph-wide: the share of the graph's nodes done, in thousandths, from every frame that says
something about it (PROTOCOL.md §3.1, §7.11): `execution_cached` (those nodes are done), `executing`
(the node before is done), `progress` (a sampler's steps), `progress_state` (the whole map, on newer
servers), and the end of the prompt. So a graph without a sampler moves too, a SaveImageWebsocket
that counts 0..n-1 does not stop short, and a successful prompt always ends at its max.

Images a `SaveImageWebsocket` output node sends arrive as binary frames (§3.2, §6.4): they are the
output, kept in `images`, not previews.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.renderer.comfyui.protocol import BinaryPreview, BinaryText, TextFrame
from services.renderer.comfyui.replies import error_of, interruption_of
from services.renderer.engine import Preview, RenderUpdate, Tick
from services.renderer.errors import RenderError

__all__ = ["PROGRESS_MAX", "PromptTracker"]

# Ticks are thousandths of the graph: fine enough for a bar, coarse enough not to flood the bus.
PROGRESS_MAX = 1000


class PromptTracker:
    """Feed it every frame of the socket; it keeps what concerns `prompt_id` and ignores the rest (§7.1)."""

    def __init__(self, prompt_id: str, nodes: Iterable[str] = (), *, websocket_output: str | None = None) -> None:
        self.prompt_id = prompt_id
        self.started = False
        self.done = False
        self.succeeded = False
        self.failure: RenderError | None = None
        self.outputs: dict[str, Any] = {}
        self.node: str | None = None
        # Output images of a SaveImageWebsocket node (the id given), in the order they came.
        self.images: list[tuple[str, bytes]] = []
        self.websocket_output = websocket_output
        self._nodes = frozenset(str(n) for n in nodes)
        self._finished: set[str] = set()
        self._running: dict[str, float] = {}
        self._reported = -1
        # Type 1 frames carry no ids: they are ours only while the last id-bearing frame was ours (§3.2).
        self._ours_active = False

    def feed(self, frame: TextFrame | BinaryPreview | BinaryText | None) -> list[RenderUpdate]:
        """Take one frame; return the progress updates it means for this prompt."""
        if self.done or frame is None or isinstance(frame, BinaryText):
            return []
        if isinstance(frame, BinaryPreview):
            return self._binary(frame)
        return self._text(frame)

    def _binary(self, frame: BinaryPreview) -> list[RenderUpdate]:
        ours = frame.prompt_id == self.prompt_id if frame.event == 4 else self._ours_active
        if not ours:
            return []
        node = frame.node_id or self.node
        if node is not None and node == self.websocket_output and frame.media_type == "image/png":
            self.images.append((frame.media_type, frame.image))
            return []
        return [Preview(frame.media_type, frame.image, node)]

    def _text(self, frame: TextFrame) -> list[RenderUpdate]:
        pid, data = frame.prompt_id, frame.data
        if pid is None:
            # The `executing` replayed to a reconnecting socket has no prompt_id (§6.7): only a hint.
            if frame.type == "executing" and self.started and isinstance(data.get("node"), str):
                self.node = data["node"]
            return []
        if pid != self.prompt_id:
            if frame.type in ("executing", "progress", "execution_start"):
                self._ours_active = False
            return []
        kind = frame.type
        if kind == "execution_start":
            self.started = True
        elif kind == "execution_cached":
            self._finished.update(str(n) for n in data.get("nodes") or [])
            return self._tick()
        elif kind == "executing":
            return self._executing(data.get("node"))
        elif kind == "progress":
            self._ours_active = True
            return self._progress(data)
        elif kind == "progress_state":
            return self._progress_state(data.get("nodes"))
        elif kind == "executed" and isinstance(data.get("output"), dict):
            self.outputs[str(data.get("node"))] = data["output"]
        elif kind == "execution_success":
            self.succeeded = True
        elif kind == "execution_error":
            self.failure = error_of(data)
        elif kind == "execution_interrupted":
            self.failure = interruption_of(data)
        return []

    def _executing(self, node: object) -> list[RenderUpdate]:
        self.started = True
        if self.node is not None:
            self._finished.add(self.node)  # nodes run one at a time: the one before is done
        if node is None:
            self.done, self._ours_active = True, False
            if self.failure is None:
                self._finished |= self._nodes
            return self._tick()
        self.node, self._ours_active = str(node), True
        self._running.setdefault(self.node, 0.0)
        return self._tick()

    def _progress(self, data: dict[str, Any]) -> list[RenderUpdate]:
        value, maximum = data.get("value"), data.get("max")
        if not isinstance(value, int | float) or not isinstance(maximum, int | float) or maximum <= 0:
            return []
        node = data.get("node")
        self.node = str(node) if node is not None else self.node
        if self.node is not None:
            # SaveImageWebsocket counts 0..n-1: a step reported means that step is under way, not done.
            self._running[self.node] = max(self._running.get(self.node, 0.0), min(1.0, value / maximum))
        return self._tick()

    def _progress_state(self, nodes: object) -> list[RenderUpdate]:
        if not isinstance(nodes, dict):
            return []
        for node_id, entry in nodes.items():
            if not isinstance(entry, dict):
                continue
            if entry.get("state") == "finished":
                self._finished.add(str(node_id))
                continue
            value, maximum = entry.get("value"), entry.get("max")
            if isinstance(value, int | float) and isinstance(maximum, int | float) and maximum > 0:
                fraction = min(1.0, value / maximum)
                self._running[str(node_id)] = max(self._running.get(str(node_id), 0.0), fraction)
        return self._tick()

    def _tick(self) -> list[RenderUpdate]:
        """A tick when the graph-wide share moved forward (it never goes back)."""
        nodes = self._nodes
        if not nodes:
            # The graph is not known: a share of nothing means nothing, but the end is the end.
            nodes = frozenset({"end"})
            if self.done and self.failure is None:
                self._finished.add("end")
        done = len(self._finished & nodes) + sum(f for n, f in self._running.items()
                                                 if n in nodes and n not in self._finished)
        value = min(PROGRESS_MAX, int(PROGRESS_MAX * done / len(nodes)))
        if value <= self._reported:
            return []
        self._reported = value
        return [Tick(value, PROGRESS_MAX, self.node)]
