"""The renderer service's settings: the shared runtime settings plus its own (prefix LIKENESS_)."""

from __future__ import annotations

from services.runtime.settings import RuntimeSettings

__all__ = ["RendererSettings"]


class RendererSettings(RuntimeSettings):
    """Settings of the renderer service."""

    service_name: str = "renderer"
