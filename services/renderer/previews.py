"""Shrinking preview frames to a small JPEG that fits on core NATS (pure)."""

from __future__ import annotations

import io

from PIL import Image

__all__ = ["shrink_preview"]

_SIDES = (384, 256, 160, 96)
_QUALITIES = (75, 55, 35)


def shrink_preview(data: bytes, max_bytes: int) -> bytes | None:
    """A JPEG of the preview within `max_bytes`, or None if the bytes are no image or cannot get that small."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "WEBP"]) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    for side in _SIDES:
        small = image.copy()
        small.thumbnail((side, side))
        for quality in _QUALITIES:
            out = io.BytesIO()
            small.save(out, format="JPEG", quality=quality)
            if out.tell() <= max_bytes:
                return out.getvalue()
    return None
