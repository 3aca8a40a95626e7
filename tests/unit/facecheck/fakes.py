"""An in-tree fake `FaceEncoder`: faces are drawn as coloured squares, the colour is the identity."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from services.facecheck.encoder import DetectedFace

__all__ = ["FakeEncoder", "picture"]


def picture(*squares: tuple[int, int, int, tuple[int, int, int]], size: int = 128) -> bytes:
    """PNG on a black canvas with one filled square (x, y, side, rgb) per face."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    for x, y, side, colour in squares:
        pixels[y:y + side, x:x + side] = colour
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeEncoder:
    """Finds each non-black square; its embedding is its colour, compared by cosine x 100."""

    name = "fake/colours"

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, image: np.ndarray) -> list[DetectedFace]:
        self.calls += 1
        faces, seen = [], np.zeros(image.shape[:2], dtype=bool)
        for y, x in zip(*np.nonzero(image.any(axis=2))):
            if seen[y, x]:
                continue
            colour = image[y, x]
            side = int(np.argmin(np.append((image[y, x:] == colour).all(axis=1), False)))
            seen[y:y + side, x:x + side] = True
            landmarks = np.full((5, 2), (x + side / 2, y + side / 2), dtype=np.float32)
            faces.append(DetectedFace(x=float(x), y=float(y), width=float(side), height=float(side), det_score=0.9,
                                      landmarks=landmarks, embedding=colour.astype(np.float32)))
        return faces

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        return max(0.0, min(100.0, 100 * cos))
