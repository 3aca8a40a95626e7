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
