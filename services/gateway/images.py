"""Image work the gateway does itself: thumbnails, perceptual hashes, placeholder avatars, previews.

All pure functions of bytes (callers run the heavy ones in a thread), plus a byte-bounded cache.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import warnings
from collections import OrderedDict

from PIL import Image

__all__ = ["ByteCache", "dhash", "hamming", "placeholder_avatar", "preview_data_url", "sniff_media_type", "thumbnail"]

_ALLOWED = ["JPEG", "PNG", "WEBP"]
_PALETTE = ("#6d597a", "#355070", "#b56576", "#2a9d8f", "#e76f51", "#264653", "#8338ec", "#3a86ff")


def sniff_media_type(data: bytes) -> str | None:
    """The media type the bytes really are (by their signature, never a file name), if an allowed one."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _open(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data), formats=_ALLOWED)
        image.load()
    return image


def thumbnail(data: bytes, side: int) -> bytes:
    """A WebP no larger than `side` on its longest edge."""
    image = _open(data)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=80, method=4)
    return out.getvalue()


def dhash(data: bytes, size: int = 8) -> str:
    """Difference hash: 64 bits (size 8) as 16 hex digits; near images give near hashes."""
    image = _open(data).convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    pixels = image.tobytes()  # mode L: one byte per pixel, row by row
    bits = 0
    for row in range(size):
        for col in range(size):
            left, right = pixels[row * (size + 1) + col], pixels[row * (size + 1) + col + 1]
            bits = (bits << 1) | (left > right)
    return f"{bits:0{size * size // 4}x}"


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hashes of the same size."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def placeholder_avatar(character_id: str, name: str) -> bytes:
    """An SVG circle with the name's first letter, in a colour that stays the same for the character."""
    colour = _PALETTE[hashlib.sha256(character_id.encode()).digest()[0] % len(_PALETTE)]
    letter = html.escape((name.strip()[:1] or "?").upper())
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">'
        f'<circle cx="128" cy="128" r="128" fill="{colour}"/>'
        '<text x="128" y="128" dy=".35em" text-anchor="middle" font-family="sans-serif" font-size="120" '
        f'fill="#ffffff">{letter}</text></svg>'
    ).encode()


def preview_data_url(media_type: str, data_base64: str, max_chars: int) -> str | None:
    """A data URL of a preview frame, shrunk to a small JPEG when over `max_chars`; None if unreadable."""
    if len(data_base64) <= max_chars:
        return f"data:{media_type};base64,{data_base64}"
    try:
        image = _open(base64.b64decode(data_base64, validate=True)).convert("RGB")
    except Exception:  # noqa: BLE001 - a broken preview is skipped, never fatal to the stream
        return None
    for side in (384, 256, 160, 96):
        small = image.copy()
        small.thumbnail((side, side))
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=60)
        encoded = base64.b64encode(out.getvalue()).decode()
        if len(encoded) <= max_chars:
            return f"data:image/jpeg;base64,{encoded}"
    return None


class ByteCache:
    """A least-recently-used map of bytes, bounded by their total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: str) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= len(old)
        self._items[key] = value
        self._size += len(value)
        while self._size > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)
