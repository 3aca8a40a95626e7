"""One WebP picture of a batch's finished images, laid out in a near-square grid. Pure."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image

__all__ = ["compose_grid"]

_GAP = 8


def compose_grid(images: Sequence[bytes], *, tile: int = 512, quality: int = 90) -> bytes:
    """Each image fitted into a `tile`-sized cell (aspect kept), row by row, encoded as WebP."""
    if not images:
        raise ValueError("a grid needs at least one image")
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    sheet = Image.new("RGB", (columns * tile + (columns - 1) * _GAP, rows * tile + (rows - 1) * _GAP), "white")
    for i, data in enumerate(images):
        with Image.open(io.BytesIO(data)) as opened:
            picture = opened.convert("RGB")
        picture.thumbnail((tile, tile))
        x = (i % columns) * (tile + _GAP) + (tile - picture.width) // 2
        y = (i // columns) * (tile + _GAP) + (tile - picture.height) // 2
        sheet.paste(picture, (x, y))
    out = io.BytesIO()
    sheet.save(out, format="WEBP", quality=quality)
    return out.getvalue()
