"""What the renderer engine tests render: plain PNG pictures, the input picture, and a RenderStep of it."""

from __future__ import annotations

import io
import uuid

from PIL import Image

from contracts import ImageRef, RenderStep

__all__ = ["GREEN", "INPUT", "job", "png"]

GREEN = (10, 200, 30)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 80)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


INPUT = png(GREEN)


def job(**kw) -> RenderStep:
    """A qwen_edit render of INPUT at 512x512 (ComfyUI's model); `kw` overrides any field."""
    ref = ImageRef(sha256="ab" * 32, media_type="image/png", width=96, height=80, bytes=len(INPUT))
    fields = dict(chain_id=uuid.uuid4(), step=0, attempt=1, seed=7, input_image=ref, prompt="on a beach", width=512,
                  height=512, steps=6, cfg=1.0, model="qwen-image-edit", template="qwen_edit")
    return RenderStep(**{**fields, **kw})
