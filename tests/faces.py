"""Real face pictures for tests, cut at test time from the group photo the insightface wheel ships.

`insightface/data/images/t1.jpg` shows six different people; person 0 is the leftmost, 5 the
rightmost. Nothing here is committed as an image: every picture is made from that file on demand.
"""

from __future__ import annotations

import functools
import io
from importlib.util import find_spec
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance

__all__ = [
    "PEOPLE",
    "VARIANTS",
    "corrupt_image",
    "face_at_bottom",
    "face_of",
    "group_photo",
    "group_photo_path",
    "no_face_image",
    "same_face_variant",
    "two_faces_image",
]

# Face boxes (x0, y0, x1, y1) in t1.jpg, measured once with SCRFD; fixed so the helpers need no detector.
_BOXES = (
    (59, 263, 169, 396),
    (269, 147, 371, 265),
    (465, 265, 573, 416),
    (746, 339, 846, 481),
    (905, 54, 1013, 204),
    (1131, 271, 1226, 399),
)
_SIZE = (1280, 886)
PEOPLE = len(_BOXES)
# Transformations that keep the person: what an edit model or a re-encode may do to a face.
VARIANTS = ("half", "double", "jpeg", "shifted", "brighter", "darker")


def group_photo_path() -> Path:
    """Where the installed insightface package keeps t1.jpg."""
    spec = find_spec("insightface")
    if spec is None or spec.origin is None:
        raise RuntimeError("tests need the insightface package (pip install insightface) for its sample photo")
    path = Path(spec.origin).parent / "data" / "images" / "t1.jpg"
    if not path.is_file():
        raise RuntimeError(f"insightface's sample photo is missing: {path}")
    return path


@functools.cache
def group_photo() -> Image.Image:
    """The six-person photo as RGB."""
    image = Image.open(group_photo_path()).convert("RGB")
    # The boxes above belong to this exact picture; another one would give silently wrong crops.
    if image.size != _SIZE:
        raise RuntimeError(f"unexpected t1.jpg of size {image.size}, expected {_SIZE}")
    return image


def face_of(person: int, *, size: int = 256, margin: float = 0.45, shift: float = 0.0) -> bytes:
    """PNG of one person's head and shoulders: a square crop around the face, resized to `size`."""
    return _png(_crop(person, size=size, margin=margin, shift=shift))


def face_at_bottom(person: int, *, size: int = 256) -> bytes:
    """PNG of a portrait whose face sits at the lower edge, the chin a few pixels above it: where a caption
    written over the picture would cover the mouth (one of the real photos of issue 13 was framed so)."""
    x0, y0, x1, y1 = _BOXES[person]
    side = max(x1 - x0, y1 - y0) * 2.2
    cx, bottom = (x0 + x1) / 2, y1 + 0.03 * side
    box = (round(cx - side / 2), round(bottom - side), round(cx + side / 2), round(bottom))
    return _png(group_photo().crop(box).resize((size, size), Image.Resampling.LANCZOS))


def same_face_variant(person: int, variant: str = "jpeg") -> bytes:
    """The same person's crop after a transformation that keeps identity (one of `VARIANTS`)."""
    if variant == "half":
        return _png(_crop(person, size=128))
    if variant == "double":
        return _png(_crop(person, size=512))
    if variant == "jpeg":
        buffer = io.BytesIO()
        _crop(person).save(buffer, format="JPEG", quality=15)
        return buffer.getvalue()
    if variant == "shifted":
        return face_of(person, shift=0.08)
    if variant in ("brighter", "darker"):
        factor = 1.25 if variant == "brighter" else 0.75
        return _png(ImageEnhance.Brightness(_crop(person)).enhance(factor))
    raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")


def two_faces_image(first: int = 0, second: int = 3, *, size: int = 256) -> bytes:
    """PNG of two people side by side (`first` on the left)."""
    canvas = Image.new("RGB", (2 * size, size))
    canvas.paste(_crop(first, size=size), (0, 0))
    canvas.paste(_crop(second, size=size), (size, 0))
    return _png(canvas)


def no_face_image(size: int = 256) -> bytes:
    """PNG of a synthetic scene (sky, ground, sun, a house) with no face in it."""
    image = Image.new("RGB", (size, size), (135, 180, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, size * 2 // 3, size, size), fill=(90, 140, 60))
    draw.ellipse((size * 3 // 4, size // 10, size * 9 // 10, size // 4), fill=(250, 220, 80))
    draw.rectangle((size // 6, size // 2, size // 2, size * 5 // 6), fill=(170, 90, 60))
    draw.polygon(((size // 8, size // 2), (size // 3, size // 3), (size * 13 // 24, size // 2)), fill=(120, 40, 30))
    return _png(image)


def corrupt_image() -> bytes:
    """Bytes that start like a PNG and then are not one."""
    return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _crop(person: int, *, size: int = 256, margin: float = 0.45, shift: float = 0.0) -> Image.Image:
    if not 0 <= person < PEOPLE:
        raise ValueError(f"person must be 0..{PEOPLE - 1}, got {person}")
    x0, y0, x1, y1 = _BOXES[person]
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2 + shift * side, (y0 + y1) / 2 + shift * side
    box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    # Pillow pads a crop that leaves the photo with black, which is fine for a face detector.
    return group_photo().crop(box).resize((size, size), Image.Resampling.LANCZOS)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
