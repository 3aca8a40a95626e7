"""What the fake ComfyUI does for a test: which image it outputs, and how it misbehaves."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

__all__ = ["ImagePolicy", "Scenario", "same_as_input"]

# (the API graph as queued, the bytes of the file its LoadImage reads or None) -> output image bytes
ImagePolicy = Callable[[dict[str, Any], bytes | None], bytes]


_LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage")


def same_as_input(graph: dict[str, Any], input_bytes: bytes | None) -> bytes:
    """Default policy: the uploaded input re-encoded as PNG; for text-to-image a grey picture of the empty
    latent's size, as a real server's output has that size (64 x 64 when the graph has no such node)."""
    if input_bytes is None:
        image = Image.new("RGB", _latent_size(graph), (128, 128, 128))
    else:
        with Image.open(io.BytesIO(input_bytes)) as opened:
            image = opened.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _latent_size(graph: dict[str, Any]) -> tuple[int, int]:
    for node in graph.values():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        if node.get("class_type") in _LATENTS and isinstance(inputs.get("width"), int) \
                and isinstance(inputs.get("height"), int):
            return inputs["width"], inputs["height"]
    return 64, 64


@dataclass
class Scenario:
    """Knobs of one fake server; tests may change them between renders."""

    image_for: ImagePolicy = same_as_input
    step_delay_s: float = 0.0  # per sampler step (KSampler & co. report progress and previews)
    node_delay_s: float = 0.0  # per executed node
    fail_at_node: str | None = None  # a node id or class_type: execution_error there
    fail_type: str = "torch.OutOfMemoryError"
    fail_message: str = "Allocation on device failed"
    previews: bool = True
    hang: bool = False  # accept TCP, never answer HTTP or the websocket handshake
    drop_socket_at_step: int | None = None  # close the client's socket after that sampler step, once
    reconnect_hold_s: float = 0.0  # after a drop, hold that client's next handshake this long
    extra_classes: set[str] = field(default_factory=set)
    # Node classes this server lacks (e.g. {"SaveImageWebsocket"} with --disable-all-custom-nodes).
    missing_classes: set[str] = field(default_factory=set)
    # Close the client's socket right after a SaveImageWebsocket frame is sent, once.
    drop_socket_before_image: bool = False
