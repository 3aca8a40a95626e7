"""Routing jobs to engines by style and model, and handing a job on when an engine is unreachable."""

from __future__ import annotations

import uuid

import pytest

from contracts import ImageRef, RenderStep
from services.renderer.engine import RenderOutput
from services.renderer.errors import BackendUnreachable, RenderError
from services.renderer.routing import RoutedEngine, engines_for
from services.renderer.settings import RendererSettings

ROUTES = {"style:watercolor": ("openai-images", "comfyui"), "model:flux-kontext-dev": ("runpod",),
          "default": ("comfyui", "runpod")}
ALL = ["comfyui", "runpod", "openai-images"]


def job(**kw) -> RenderStep:
    ref = ImageRef(sha256="ab" * 32, media_type="image/png", width=8, height=8, bytes=10)
    fields = dict(chain_id=uuid.uuid4(), step=0, attempt=1, seed=7, input_image=ref, prompt="on a beach", width=512,
                  height=512, steps=6, cfg=1.0, model="qwen-image-edit", template="qwen_edit", style="photoreal")
    return RenderStep(**{**fields, **kw})


def test_style_then_model_then_default_then_everything() -> None:
    assert engines_for(job(style="watercolor", model="flux-kontext-dev"), ROUTES, ALL) == ["openai-images", "comfyui"]
    assert engines_for(job(model="flux-kontext-dev"), ROUTES, ALL) == ["runpod"]
    assert engines_for(job(), ROUTES, ALL) == ["comfyui", "runpod"]
    assert engines_for(job(), {}, ALL) == ALL
    # A route keeps only engines that are there.
    assert engines_for(job(style="watercolor"), ROUTES, ["comfyui"]) == ["comfyui"]


class Engine:
    def __init__(self, name: str, error: RenderError | None = None) -> None:
        self.name, self.error, self.jobs = name, error, []

    async def render(self, job, input_image, progress, *, reference_image=None) -> RenderOutput:
        self.jobs.append(job)
        if self.error is not None:
            raise self.error
        return RenderOutput(b"png", "image/png", "hash", f"{self.name}-backend", self.name)


async def nothing(update) -> None:
    return None


async def test_an_unreachable_engine_hands_the_job_to_the_next_of_its_route() -> None:
    cloud = Engine("openai-images", BackendUnreachable("HTTP 503 from https://api.example/v1: overloaded"))
    local = Engine("comfyui")
    routed = RoutedEngine([local, cloud], {"style:watercolor": ("openai-images", "comfyui")})
    out = await routed.render(job(style="watercolor"), b"in", nothing)
    assert out.engine == "comfyui" and len(cloud.jobs) == len(local.jobs) == 1
    assert local.jobs[0].seed == cloud.jobs[0].seed


async def test_a_refused_picture_is_not_tried_elsewhere_and_the_last_failure_tells_the_story() -> None:
    refused = Engine("openai-images", RenderError("validation", "moderation_blocked"))
    local = Engine("comfyui")
    with pytest.raises(RenderError, match="moderation_blocked"):
        await RoutedEngine([refused, local], {"default": ("openai-images", "comfyui")}).render(job(), b"in", nothing)
    assert local.jobs == []
    down = [Engine("runpod", BackendUnreachable("429")), Engine("comfyui", RenderError("unreachable", "all down"))]
    with pytest.raises(RenderError) as info:
        await RoutedEngine(down, {"default": ("runpod", "comfyui")}).render(job(), b"in", nothing)
    assert info.value.kind == "unreachable" and "all down (after runpod: 429)" in info.value.reason


def test_routes_must_name_engines_that_are_set_up() -> None:
    with pytest.raises(ValueError, match="not set up: \\['runpod'\\]"):
        RendererSettings(comfyui_urls="http://gpu:8188", render_routes={"default": ["runpod"]})
    with pytest.raises(ValueError, match="keys are 'default'"):
        RendererSettings(comfyui_urls="http://gpu:8188", render_routes={"watercolor": ["comfyui"]})
    settings = RendererSettings(comfyui_urls="http://gpu:8188", image_api_url="https://api.example/v1",
                                render_routes={"style:watercolor": ["openai-images", "comfyui"]})
    assert settings.engines == ("comfyui", "openai-images")
