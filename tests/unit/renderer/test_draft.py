"""The draft engine: deterministic, the input untouched (every pixel), labelled in a band below."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image, ImageDraw

from contracts import ImageRef, RenderStep
from services.renderer.draft import DraftEngine, draft_picture
from services.renderer.engine import Preview, Tick
from services.renderer.errors import RenderError

IMAGE = ImageRef(sha256="ab" * 32, media_type="image/png", width=320, height=400, bytes=100)


def portrait(fmt: str = "PNG") -> bytes:
    image = Image.new("RGB", (320, 400), (30, 60, 90))
    draw = ImageDraw.Draw(image)
    draw.ellipse([110, 60, 210, 200], fill=(230, 190, 160))
    for x in range(0, 320, 7):
        draw.line([(x, 0), (x, 400)], fill=(x % 255, 100, 200))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def job(**kw) -> RenderStep:
    fields = dict(chain_id=uuid.uuid4(), step=1, attempt=1, seed=42, input_image=IMAGE, prompt="wearing a red coat",
                  width=512, height=512, steps=4, cfg=1.0, model="qwen-image-edit", template="qwen_edit")
    return RenderStep(**{**fields, **kw})


def pixels(data: bytes, box: tuple[int, int, int, int] | None = None) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return (rgb.crop(box) if box else rgb).tobytes()


def test_same_input_and_job_give_the_same_bytes() -> None:
    source, step = portrait(), job()
    assert draft_picture(source, step) == draft_picture(source, step.model_copy(update={"chain_id": uuid.uuid4()}))


def test_a_new_seed_restyles_the_picture() -> None:
    source = portrait()
    assert draft_picture(source, job(seed=1)) != draft_picture(source, job(seed=2))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_every_pixel_of_the_input_is_kept_and_the_draft_is_a_band_below(fmt: str) -> None:
    """A real photo's face may be anywhere (a caption over the chin failed every chain): nothing is drawn on it."""
    source = portrait(fmt)
    out = draft_picture(source, job())
    with Image.open(io.BytesIO(out)) as image:
        assert image.format == "PNG" and image.width == 320 and image.height > 400
        band = image.height - 400
    assert pixels(out, (0, 0, 320, 400)) == pixels(source)
    assert len(set(pixels(out, (0, 400, 320, 400 + band)))) > 3  # a pattern and words, not one flat colour
    assert band < 400 // 3


def test_a_draft_of_a_draft_replaces_the_band_instead_of_adding_one() -> None:
    first = draft_picture(portrait(), job(prompt="on a beach at sunset"))
    second = draft_picture(first, job(step=2, prompt="sitting on a towel, smiling at the camera"))
    third = draft_picture(second, job(step=3, prompt="in a red dress"))
    heights = [Image.open(io.BytesIO(d)).height for d in (first, second, third)]
    assert heights[0] > 400 and all(h < 400 * 4 // 3 for h in heights)
    assert pixels(third, (0, 0, 320, 400)) == pixels(portrait())


def test_unreadable_input_is_a_validation_failure() -> None:
    with pytest.raises(RenderError) as info:
        draft_picture(b"not an image", job())
    assert info.value.kind == "validation"


async def test_engine_reports_progress_and_names_itself() -> None:
    updates = []

    async def progress(update) -> None:
        updates.append(update)

    engine = DraftEngine()
    first = await engine.render(job(), portrait(), progress)
    second = await engine.render(job(), portrait(), progress)
    assert (first.engine, first.backend, first.media_type) == ("draft", "draft", "image/png")
    assert first.image == second.image and first.workflow_hash == second.workflow_hash
    assert [u for u in updates if isinstance(u, Tick)][:4] == [Tick(v, 4, "draft") for v in (1, 2, 3, 4)]
    assert any(isinstance(u, Preview) for u in updates)
    other = await engine.render(job(seed=43), portrait(), progress)
    assert other.workflow_hash != first.workflow_hash
