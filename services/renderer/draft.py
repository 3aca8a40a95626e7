"""The draft engine: without any model, a deterministic picture that shows the chain working.

The face region (centre, upper-centre) is copied from the input untouched, so face checks still
pass; the rest is blurred, tinted and patterned from the job's seed, with the step's instruction
and a "DRAFT — no edit model" label written on it. Same input and job, same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
import textwrap
import time

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from contracts.render import RenderStep
from services.renderer.engine import Preview, Progress, RenderOutput, Tick
from services.renderer.errors import RenderError

__all__ = ["DRAFT_LABEL", "DraftEngine", "draft_picture", "face_box"]

DRAFT_LABEL = "DRAFT — no edit model"
_VERSION = 1  # bump when the picture changes, so draft workflow hashes change with it


class DraftEngine:
    """Renders every step with Pillow only; used when no ComfyUI backend is configured."""

    name = "draft"

    async def render(self, job: RenderStep, input_image: bytes, progress: Progress) -> RenderOutput:
        started = time.perf_counter()
        image = await asyncio.to_thread(draft_picture, input_image, job)
        for value in range(1, job.steps + 1):
            await progress(Tick(value, job.steps, "draft"))
        await progress(Preview("image/png", image, "draft"))
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        return RenderOutput(image, "image/png", _draft_hash(job, input_image), "draft", self.name, {"render": elapsed})


def face_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the region kept as it is: where a portrait's face usually is."""
    return round(width * 0.28), round(height * 0.10), round(width * 0.72), round(height * 0.62)


def draft_picture(input_image: bytes, job: RenderStep) -> bytes:
    """The draft PNG for `job` made from `input_image` (same size as the input)."""
    try:
        with Image.open(io.BytesIO(input_image), formats=["PNG", "JPEG", "WEBP"]) as opened:
            source = opened.convert("RGB")
    except (OSError, ValueError):
        raise RenderError("validation", "the input image is not a PNG, JPEG or WebP picture") from None
    rng = random.Random(_seed(job))
    width, height = source.size
    blurred = source.filter(ImageFilter.GaussianBlur(max(2, min(width, height) // rng.choice((40, 60, 90)))))
    tint = Image.new("RGB", source.size, tuple(rng.randrange(40, 216) for _ in range(3)))
    picture = Image.blend(blurred, tint, 0.35).convert("RGBA")
    picture.alpha_composite(_pattern(source.size, rng))
    _write(picture, job.prompt)
    result = picture.convert("RGB")
    box = face_box(width, height)
    result.paste(source.crop(box), box[:2])
    out = io.BytesIO()
    result.save(out, format="PNG")
    return out.getvalue()


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


def _write(picture: Image.Image, instruction: str) -> None:
    width, height = picture.size
    size = max(8, height // 28)
    font = ImageFont.load_default(size=size)
    band, top = round(height * 0.10), round(height * 0.64)
    shade = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    ImageDraw.Draw(shade).rectangle([0, top, width, height], fill=(0, 0, 0, 150))
    picture.alpha_composite(shade)
    draw = ImageDraw.Draw(picture)
    draw.rectangle([0, 0, width, band], fill=(0, 0, 0, 255))
    _label(draw, (size // 2, max(0, (band - size) // 2)), font, size)
    lines = textwrap.wrap(instruction, width=max(10, int(width / (size * 0.55))))[:4]
    for index, line in enumerate(lines):
        draw.text((size // 2, top + size // 2 + index * (size + 2)), line, fill=(255, 255, 255, 255), font=font)


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


def _draft_hash(job: RenderStep, input_image: bytes) -> str:
    """What the draft depends on, hashed like a workflow, so identical drafts share a hash."""
    recipe = {"engine": "draft", "version": _VERSION, "input": hashlib.sha256(input_image).hexdigest(),
              "seed": job.seed, "template": job.template, "step": job.step, "prompt": job.prompt}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
