"""Server-Sent Event framing, all of it: one frame, and the frames of each live message kind (progress, queue
position, waiting, previews). The streams that send them are in `sse`; the hub that carries them in `live`.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from services.gateway.images import preview_data_url

if TYPE_CHECKING:
    from services.gateway.live import LiveItem

__all__ = ["compact_json", "live_frames", "sse_frame"]


def sse_frame(event: str, data: bytes | str, event_id: int | None = None) -> bytes:
    """One Server-Sent Event; `data` must be a single line (compact JSON is)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = data if isinstance(data, bytes) else data.encode()
    return f"{head}event: {event}\ndata: ".encode() + body + b"\n\n"


async def live_frames(item: LiveItem, preview_max_chars: int) -> list[bytes]:
    """The frames of one live (not persisted) message; memoized on the item, so every listener shares them."""
    if item.type == "render.progress":
        return item.memo("frames", lambda: _progress_frames(item.data))
    if item.type == "render.preview":
        return await item.amemo("frames", lambda: _preview_frames(item.data, preview_max_chars))
    if item.type == "render.waiting":
        keys = ("chain_id", "step", "attempt", "waited_s", "limit_s")
        return item.memo("frames", lambda: [sse_frame("waiting", compact_json({k: item.data.get(k) for k in keys}))])
    return []


async def _preview_frames(data: dict[str, Any], max_chars: int) -> list[bytes]:
    url = await asyncio.to_thread(preview_data_url, data.get("media_type", "image/jpeg"), data.get("data_base64", ""),
                                  max_chars)
    if url is None:
        return []
    return [sse_frame("preview", compact_json({"chain_id": data.get("chain_id"), "step": data.get("step"),
                                         "attempt": data.get("attempt"), "node": data.get("node"), "data_url": url}))]


def _progress_frames(data: dict[str, Any]) -> list[bytes]:
    keys = ("chain_id", "step", "attempt", "value", "max", "node", "queue_position")
    frames = [sse_frame("progress", compact_json({k: data.get(k) for k in keys}))]
    if data.get("queue_position") is not None:
        frames.append(sse_frame("queue", compact_json({"position": data["queue_position"], "step": data.get("step"),
                                                       "attempt": data.get("attempt")})))
    return frames


def compact_json(value: Any) -> str:
    """JSON without spaces: one SSE data line."""
    return json.dumps(value, separators=(",", ":"))
