"""Following one prompt through the websocket frames (pure): progress, previews, failure, done."""

from __future__ import annotations

from typing import Any

from services.renderer.comfyui.protocol import BinaryPreview, BinaryText, TextFrame
from services.renderer.comfyui.replies import error_of, interruption_of
from services.renderer.engine import Preview, RenderUpdate, Tick
from services.renderer.errors import RenderError

__all__ = ["PromptTracker"]


class PromptTracker:
    """Feed it every frame of the socket; it keeps what concerns `prompt_id` and ignores the rest (§7.1)."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.started = False
        self.done = False
        self.succeeded = False
        self.failure: RenderError | None = None
        self.outputs: dict[str, Any] = {}
        self.node: str | None = None
        # Type 1 previews carry no ids: they are ours only while the last id-bearing frame was ours (§3.2).
        self._ours_active = False

    def feed(self, frame: TextFrame | BinaryPreview | BinaryText | None) -> list[RenderUpdate]:
        """Take one frame; return the progress updates it means for this prompt."""
        if self.done or frame is None or isinstance(frame, BinaryText):
            return []
        if isinstance(frame, BinaryPreview):
            return self._preview(frame)
        return self._text(frame)

    def _preview(self, frame: BinaryPreview) -> list[RenderUpdate]:
        ours = frame.prompt_id == self.prompt_id if frame.event == 4 else self._ours_active
        return [Preview(frame.media_type, frame.image, frame.node_id or self.node)] if ours else []

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
        elif kind == "executing":
            self.started = True
            node = data.get("node")
            if node is None:
                self.done = True
                self._ours_active = False
            else:
                self.node, self._ours_active = str(node), True
        elif kind == "progress":
            self._ours_active = True
            return self._tick(data)
        elif kind == "executed" and isinstance(data.get("output"), dict):
            self.outputs[str(data.get("node"))] = data["output"]
        elif kind == "execution_success":
            self.succeeded = True
        elif kind == "execution_error":
            self.failure = error_of(data)
        elif kind == "execution_interrupted":
            self.failure = interruption_of(data)
        return []

    def _tick(self, data: dict[str, Any]) -> list[RenderUpdate]:
        value, maximum = data.get("value"), data.get("max")
        if not isinstance(value, int | float) or not isinstance(maximum, int | float) or maximum <= 0:
            return []
        node = data.get("node")
        self.node = str(node) if node is not None else self.node
        return [Tick(max(0, min(int(value), int(maximum))), max(1, int(maximum)), self.node)]
