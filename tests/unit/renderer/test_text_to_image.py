"""Text-to-image jobs (no input picture) in the renderer: the draft draws a canvas of the job's size, routing
skips engines that only edit, and an edit template refuses a job without a picture."""

from __future__ import annotations

import io
import uuid

import httpx
import pytest
from PIL import Image

from contracts import RenderStep
from services.renderer.comfy_engine import ComfyUIEngine
from services.renderer.comfyui.client import Timeouts
from services.renderer.draft import draft_picture
from services.renderer.engine import RenderOutput
from services.renderer.errors import RenderError
from services.renderer.image_api_engine import ImageEditApiEngine
from services.renderer.pool import BackendPool
from services.renderer.routing import RoutedEngine
from services.renderer.templates import TemplateLibrary


def t2i_job(**kw) -> RenderStep:
    fields = dict(chain_id=uuid.uuid4(), step=0, attempt=1, seed=11, prompt="a lighthouse at dawn", width=640,
                  height=384, steps=4, cfg=6.5, model="sd_xl_base_1.0.safetensors", template="sdxl_t2i")
    return RenderStep(**{**fields, **kw})


def test_a_draft_without_input_is_a_canvas_of_the_jobs_size_with_the_band_below() -> None:
    picture = draft_picture(None, t2i_job())
    with Image.open(io.BytesIO(picture)) as image:
        assert image.width == 640 and image.height > 384
        canvas = image.convert("RGB").crop((0, 0, 640, 384))
        assert canvas.getcolors() is not None and len(canvas.getcolors()) == 1  # nothing drawn over the canvas
    assert draft_picture(None, t2i_job()) == picture
    assert draft_picture(None, t2i_job(seed=12)) != picture


class Engine:
    def __init__(self, name: str) -> None:
        self.name, self.jobs = name, []

    async def render(self, job, input_image, progress, *, reference_image=None) -> RenderOutput:
        self.jobs.append(job)
        return RenderOutput(b"png", "image/png", "hash", f"{self.name}-backend", self.name)


async def nothing(update) -> None:
    return None


async def test_a_text_to_image_job_skips_the_engine_that_only_edits() -> None:
    async with httpx.AsyncClient() as http:
        edits = ImageEditApiEngine(http, base_url="http://127.0.0.1:9", api_key="k", deadline_s=5)
        local = Engine("comfyui")
        routed = RoutedEngine([edits, local], {"default": ("openai-images", "comfyui")})
        out = await routed.render(t2i_job(), None, nothing)
        assert out.engine == "comfyui" and len(local.jobs) == 1
        only_edits = RoutedEngine([edits], {})
        with pytest.raises(RenderError) as info:
            await only_edits.render(t2i_job(), None, nothing)
        assert info.value.kind == "validation"
        with pytest.raises(RenderError, match="only edits pictures"):
            await edits.render(t2i_job(), None, nothing)


async def test_an_edit_template_refuses_a_job_without_a_picture() -> None:
    async with httpx.AsyncClient() as http:
        engine = ComfyUIEngine(BackendPool(["http://127.0.0.1:9"], http), TemplateLibrary.load(), http,
                               timeouts=Timeouts(), deadline_s=5)
        with pytest.raises(RenderError, match="edits a picture, and the job brings none") as info:
            await engine.render(t2i_job(template="qwen_edit"), None, nothing)
        assert info.value.kind == "validation"
