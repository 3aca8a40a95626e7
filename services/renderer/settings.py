"""The renderer service's settings: the shared runtime settings plus its own (prefix LIKENESS_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import NoDecode

from services.runtime.settings import RuntimeSettings

__all__ = ["BackendServes", "RendererSettings"]

# RenderPreview allows 256 KiB of base64, i.e. 192 KiB of image; stay below it.
_PREVIEW_CEILING = 190 * 1024


class BackendServes(BaseModel):
    """What one backend declares it serves; empty means anything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()


class RendererSettings(RuntimeSettings):
    """Settings of the renderer service."""

    service_name: str = "renderer"

    # Comma-separated ComfyUI base URLs; empty: the draft engine renders without any model.
    comfyui_urls: Annotated[tuple[str, ...], NoDecode] = ()
    # JSON {url: {"models": [...], "styles": [...]}}: route jobs to the backends that serve their model/style.
    comfyui_serves: dict[str, BackendServes] = {}
    # A folder of extra API-format templates; a file named like a built-in one replaces it.
    templates_dir: Path | None = None

    render_timeout_s: float = Field(default=600.0, gt=0)
    # When no backend can take a step (all refuse connections: a ComfyUI restarting), wait this long for
    # one to come back before failing it as unreachable; 0 fails at once. Not counted in render_timeout_s.
    render_backend_wait_s: float = Field(default=30.0, ge=0, le=3600)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0)
    poll_interval_s: float = Field(default=5.0, gt=0)
    health_interval_s: float = Field(default=15.0, gt=0)
    health_timeout_s: float = Field(default=5.0, gt=0)
    idle_free_s: float = Field(default=600.0, gt=0)
    workers: int = Field(default=4, ge=1, le=256)
    preview_max_bytes: int = Field(default=48 * 1024, ge=1024, le=_PREVIEW_CEILING)
    preview_interval_s: float = Field(default=0.25, ge=0)

    @field_validator("comfyui_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(url.strip() for url in value.split(",") if url.strip())
        return value

    @field_validator("comfyui_urls")
    @classmethod
    def _http_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"LIKENESS_COMFYUI_URLS: {url!r} is not an http(s):// URL")
        return tuple(url.rstrip("/") for url in urls)

    @model_validator(mode="after")
    def _serves_known_urls(self) -> RendererSettings:
        unknown = {url.rstrip("/") for url in self.comfyui_serves} - set(self.comfyui_urls)
        if unknown:
            raise ValueError(f"LIKENESS_COMFYUI_SERVES names backends not in LIKENESS_COMFYUI_URLS: {sorted(unknown)}")
        return self

    @property
    def reconnect_give_up_s(self) -> float:
        """How long a backend may refuse the websocket mid-render before the attempt fails as unreachable."""
        return max(self.render_backend_wait_s, self.connect_timeout_s)
