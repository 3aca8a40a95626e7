"""Parsing ComfyUI websocket frames (PROTOCOL.md §3): text JSON frames and big-endian binary frames.

Pure: bytes and strings in, small frozen records out; anything malformed becomes None, never an exception,
because one odd frame must not end a render.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FEATURE_FLAGS",
    "BinaryPreview",
    "BinaryText",
    "TextFrame",
    "parse_binary",
    "parse_text",
]

# Must be the first message the client sends, or the server ignores it (§3).
FEATURE_FLAGS = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
_LEGACY_FORMATS = {1: "image/jpeg", 2: "image/png"}
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class TextFrame:
    """A JSON frame `{"type": ..., "data": {...}}`."""

    type: str
    data: dict[str, Any]

    @property
    def prompt_id(self) -> str | None:
        value = self.data.get("prompt_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class BinaryPreview:
    """A preview image: type 1 (legacy, no ids) or type 4 (with metadata naming prompt and node)."""

    event: int
    media_type: str
    image: bytes
    prompt_id: str | None = None
    node_id: str | None = None


@dataclass(frozen=True)
class BinaryText:
    """Type 3: progress text of a node, broadcast to every socket and carrying no prompt id."""

    node_id: str
    text: str


def parse_text(raw: str | bytes) -> TextFrame | None:
    """A text frame, or None if it is not JSON of the `{type, data}` shape."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    data = message.get("data")
    return TextFrame(message["type"], data if isinstance(data, dict) else {})


def parse_binary(raw: bytes) -> BinaryPreview | BinaryText | None:
    """A binary frame (all integers u32 big-endian), or None if short, unknown or malformed."""
    if len(raw) < 8:
        return None
    event = _U32.unpack_from(raw, 0)[0]
    second = _U32.unpack_from(raw, 4)[0]
    if event == PREVIEW_IMAGE:
        media_type = _LEGACY_FORMATS.get(second)
        body = raw[8:]
        return BinaryPreview(event, media_type, body) if media_type and body else None
    if event == PREVIEW_IMAGE_WITH_METADATA:
        return _with_metadata(raw, second)
    if event == TEXT:
        node = raw[8 : 8 + second]
        if len(node) != second:
            return None
        return BinaryText(node.decode("utf-8", "replace"), raw[8 + second :].decode("utf-8", "replace"))
    return None


def _with_metadata(raw: bytes, length: int) -> BinaryPreview | None:
    # No image-format word here: the format is `image_type` in the JSON (§3.2).
    end = 8 + length
    if end > len(raw):
        return None
    try:
        meta = json.loads(raw[8:end])
    except (ValueError, RecursionError):
        return None
    if not isinstance(meta, dict):
        return None
    media_type = meta.get("image_type")
    image = raw[end:]
    if not isinstance(media_type, str) or not media_type.startswith("image/") or not image:
        return None
    return BinaryPreview(
        PREVIEW_IMAGE_WITH_METADATA,
        media_type,
        image,
        prompt_id=_str_or_none(meta.get("prompt_id")),
        node_id=_str_or_none(meta.get("node_id")),
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
