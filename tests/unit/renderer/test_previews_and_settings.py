"""Preview shrinking and the renderer's settings."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image
from pydantic import ValidationError

from services.renderer.previews import shrink_preview
from services.renderer.settings import RendererSettings


def noisy_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, format="PNG")
    return out.getvalue()


def test_a_big_preview_becomes_a_small_jpeg() -> None:
    big = noisy_png(1024)
    small = shrink_preview(big, 24 * 1024)
    assert small is not None and len(small) <= 24 * 1024 < len(big)
    with Image.open(io.BytesIO(small)) as image:
        assert image.format == "JPEG" and max(image.size) <= 384


def test_garbage_is_no_preview() -> None:
    assert shrink_preview(b"garbage", 10_000) is None


def test_urls_are_comma_separated_and_serves_must_name_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_COMFYUI_URLS", "http://gpu-a:8188/, http://gpu-b:8188")
    monkeypatch.setenv("LIKENESS_COMFYUI_SERVES", '{"http://gpu-a:8188": {"styles": ["anime"]}}')
    settings = RendererSettings()
    assert settings.comfyui_urls == ("http://gpu-a:8188", "http://gpu-b:8188")
    assert settings.comfyui_serves["http://gpu-a:8188"].styles == ("anime",)
    monkeypatch.setenv("LIKENESS_COMFYUI_SERVES", '{"http://elsewhere:1": {}}')
    with pytest.raises(ValidationError, match="not in LIKENESS_COMFYUI_URLS"):
        RendererSettings()


def test_no_urls_means_draft(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIKENESS_COMFYUI_URLS", raising=False)
    assert RendererSettings().comfyui_urls == ()
    monkeypatch.setenv("LIKENESS_COMFYUI_URLS", "gpu:8188")
    with pytest.raises(ValidationError, match="not an http"):
        RendererSettings()


def test_the_backend_wait_bounds_a_refused_websocket(monkeypatch: pytest.MonkeyPatch) -> None:
    # (A running render is kept from redelivery by in-progress acks, whatever its length: tests/integration/test_bus.py.)
    monkeypatch.delenv("LIKENESS_RENDER_BACKEND_WAIT_S", raising=False)
    default = RendererSettings()
    assert default.render_backend_wait_s == 30
    without = RendererSettings(render_backend_wait_s=0)
    monkeypatch.setenv("LIKENESS_RENDER_BACKEND_WAIT_S", "300")
    long = RendererSettings()
    assert long.reconnect_give_up_s == 300
    assert without.reconnect_give_up_s == without.connect_timeout_s
    monkeypatch.setenv("LIKENESS_RENDER_BACKEND_WAIT_S", "-1")
    with pytest.raises(ValidationError):
        RendererSettings()


def test_with_comfyui_the_consumer_holds_enough_jobs_for_the_scheduler_to_reorder(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LIKENESS_COMFYUI_URLS", "LIKENESS_WORKERS", "LIKENESS_RENDER_HOLD", "LIKENESS_RUNPOD_URL"):
        monkeypatch.delenv(name, raising=False)
    assert RendererSettings().consumer_workers == 4  # draft: as many as render at once
    assert RendererSettings(runpod_url="https://api.runpod.ai/v2/x").consumer_workers == 4
    comfy = RendererSettings(comfyui_urls=("http://gpu-a:8188",))
    assert (comfy.consumer_workers, comfy.backend_slots, comfy.affinity_skips) == (64, 1, 2)
    assert RendererSettings(comfyui_urls=("http://gpu-a:8188",), render_hold=8, workers=16).consumer_workers == 16
    with pytest.raises(ValidationError):
        RendererSettings(backend_slots=0)
