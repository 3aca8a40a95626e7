"""The draft engine: without any model, a deterministic picture that shows the chain working.

The input picture is kept pixel for pixel, all of it: a face can be anywhere in a real photo, and
anything drawn over it (a caption over the chin) makes the face check fail every step. The draft is
shown in a band added below the picture: a pattern and colour from the job's seed, the "DRAFT — no
edit model" label and the step's instruction. A draft made from a draft replaces the band (its height
travels in the PNG's text chunk), so a chain of steps does not stack bands. Same input and job, same bytes.
A text-to-image job (no input) gets a plain canvas of the job's size in a colour of its seed, then the band.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
import textwrap
import time

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from contracts.render import RenderStep
from services.renderer.engine import Preview, Progress, RenderOutput, Tick
from services.renderer.errors import RenderError

__all__ = ["DRAFT_LABEL", "DraftEngine", "draft_picture"]

DRAFT_LABEL = "DRAFT — no edit model"
_VERSION = 2  # bump when the picture changes, so draft workflow hashes change with it
_BAND_KEY = "likeness-draft-band"


class DraftEngine:
    """Renders every step with Pillow only; used when no ComfyUI backend is configured."""

    name = "draft"

    async def render(self, job: RenderStep, input_image: bytes | None, progress: Progress, *,
                     reference_image: bytes | None = None) -> RenderOutput:
        # The stand-in draws the same band for every job; a face restore is drawn like an edit of its input.
        started = time.perf_counter()
        image = await asyncio.to_thread(draft_picture, input_image, job)
        for value in range(1, job.steps + 1):
            await progress(Tick(value, job.steps, "draft"))
        await progress(Preview("image/png", image, "draft"))
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        return RenderOutput(image, "image/png", _draft_hash(job, input_image), "draft", self.name, {"render": elapsed})


def draft_picture(input_image: bytes | None, job: RenderStep) -> bytes:
    """The draft PNG for `job` made from `input_image` (the input untouched, a band below it), or from nothing."""
    rng = random.Random(_seed(job))
    if input_image is None:
        source = Image.new("RGB", (job.width, job.height), tuple(rng.randrange(60, 200) for _ in range(3)))
        earlier_band = 0
    else:
        source, earlier_band = _opened(input_image)
    if earlier_band:
        source = source.crop((0, 0, source.width, source.height - earlier_band))
    width, height = source.size
    size = max(10, min(width // 30, 28))
    lines = textwrap.wrap(job.prompt, width=max(10, int(width / (size * 0.55))))[:3]
    band = size * (2 + len(lines)) + size
    # A dark colour of the seed's: the pattern shows on it, and so do the white and yellow words.
    result = Image.new("RGBA", (width, height + band), (*(rng.randrange(20, 100) for _ in range(3)), 255))
    result.alpha_composite(_pattern((width, band), rng), (0, height))
    result.paste(source, (0, 0))
    _write(result, height, size, lines)
    out = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text(_BAND_KEY, str(band))
    result.convert("RGB").save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def _opened(input_image: bytes) -> tuple[Image.Image, int]:
    """The input picture and the height of the band an earlier draft added to it (0: none)."""
    try:
        with Image.open(io.BytesIO(input_image), formats=["PNG", "JPEG", "WEBP"]) as opened:
            return opened.convert("RGB"), _band_height(opened.info.get(_BAND_KEY), opened.height)
    except (OSError, ValueError):
        raise RenderError("validation", "the input image is not a PNG, JPEG or WebP picture") from None


def _band_height(value: object, height: int) -> int:
    # Only a band this engine wrote, and never the whole picture.
    try:
        band = int(str(value))
    except ValueError:
        return 0
    return band if 0 < band < height else 0


def _pattern(size: tuple[int, int], rng: random.Random) -> Image.Image:
    width, height = size
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    colour = (*(rng.randrange(256) for _ in range(3)), 70)
    gap = max(6, min(width, height) // rng.choice((8, 12, 16)))
    kind = rng.choice(("stripes", "dots", "grid"))
    if kind == "stripes":
        for x in range(-height, width, gap):
            draw.line([(x, 0), (x + height, height)], fill=colour, width=max(1, gap // 4))
    elif kind == "dots":
        for y in range(0, height, gap):
            for x in range((y // gap % 2) * gap // 2, width, gap):
                draw.ellipse([x, y, x + gap // 3, y + gap // 3], fill=colour)
    else:
        for x in range(0, width, gap):
            draw.line([(x, 0), (x, height)], fill=colour, width=1)
        for y in range(0, height, gap):
            draw.line([(0, y), (width, y)], fill=colour, width=1)
    return layer


def _write(picture: Image.Image, top: int, size: int, lines: list[str]) -> None:
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(picture)
    _label(draw, (size // 2, top + size // 2), font, size)
    for index, line in enumerate(lines):
        draw.text((size // 2, top + size * (2 + index)), line, fill=(255, 255, 255, 255), font=font)


def _label(draw: ImageDraw.ImageDraw, at: tuple[int, int], font: ImageFont.FreeTypeFont, size: int) -> None:
    # Pillow's built-in font has no em dash glyph, so the dash is drawn as a bar between the two halves.
    left, right = DRAFT_LABEL.split(" — ")
    yellow = (255, 220, 0, 255)
    x, y = at
    draw.text((x, y), left, fill=yellow, font=font)
    x += round(draw.textlength(left + " ", font=font))
    draw.rectangle([x, y + size // 2, x + size, y + size // 2 + max(1, size // 10)], fill=yellow)
    draw.text((x + size + round(draw.textlength(" ", font=font)), y), right, fill=yellow, font=font)


def _seed(job: RenderStep) -> int:
    # The step kind is not in RenderStep; template, step and prompt stand in for it.
    key = f"{job.seed}:{job.template}:{job.step}:{job.prompt}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _draft_hash(job: RenderStep, input_image: bytes | None) -> str:
    """What the draft depends on, hashed like a workflow, so identical drafts share a hash."""
    # A text-to-image draft depends on the size it is drawn at instead of an input.
    drawn = f"{job.width}x{job.height}" if input_image is None else hashlib.sha256(input_image).hexdigest()
    recipe = {"engine": "draft", "version": _VERSION, "input": drawn,
              "seed": job.seed, "template": job.template, "step": job.step, "prompt": job.prompt}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
