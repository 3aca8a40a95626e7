"""Which picture format some bytes hold, as the engines name and label it: PNG, JPEG or WebP (pure)."""

from __future__ import annotations

import io

from PIL import Image

__all__ = ["IMAGE_FORMATS", "image_kind"]

# Pillow format name -> (file extension, media type); the only formats the renderer takes in or hands on.
IMAGE_FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "WEBP": ("webp", "image/webp")}


def image_kind(data: bytes) -> tuple[str, str] | None:
    """(extension, media type) of a PNG, JPEG or WebP picture; None for anything else."""
    try:
        with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as image:
            return IMAGE_FORMATS.get(image.format or "")
    except (OSError, ValueError):
        return None
