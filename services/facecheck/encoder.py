"""The seam between policy and face models: `FaceEncoder` (detect with 5 landmarks, align, embed) and image decoding."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps

from services.facecheck.errors import UnreadableImage

__all__ = ["DetectedFace", "FaceEncoder", "cosine", "decode_image"]

# The formats the blob store accepts; other Pillow decoders are less hardened against hostile bytes.
_FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face in an image: its box in pixels, detector confidence (0..1), landmarks and embedding."""

    x: float
    y: float
    width: float
    height: float
    det_score: float
    # Five (x, y) points, both eyes, nose tip and mouth corners, in the backend's own order.
    landmarks: np.ndarray
    embedding: np.ndarray

    @property
    def area(self) -> float:
        return self.width * self.height


class FaceEncoder(Protocol):
    """A face model: finds every face in an image and embeds each; compares two embeddings on 0..100."""

    # Names the model that made the embeddings (e.g. "insightface/buffalo_l"); scores compare only within one.
    name: str

    def encode(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face of an RGB uint8 image (H×W×3), detected, aligned and embedded."""
        ...

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """Similarity of two embeddings on 0..100, where 40 separates the same person from another."""
        ...


def decode_image(data: bytes, *, max_pixels: int = 40_000_000) -> np.ndarray:
    """RGB uint8 array of a PNG/JPEG/WebP image, upright per its EXIF orientation; else `UnreadableImage`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
                if image.width * image.height > max_pixels:
                    raise UnreadableImage(f"image of {image.width}x{image.height} pixels is over {max_pixels}")
                # Phone uploads store pixels sideways and say so in EXIF; a sideways face is not detected.
                rgb = ImageOps.exif_transpose(image).convert("RGB")
    except UnreadableImage:
        raise
    except Image.UnidentifiedImageError:
        raise UnreadableImage("not a PNG, JPEG or WebP image") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types (OSError, SyntaxError, ...)
        raise UnreadableImage(f"damaged image: {type(exc).__name__}: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a.ravel(), b.ravel()) / norms) if norms > 0 else 0.0
