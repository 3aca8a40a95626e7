"""The renderer service's settings: the shared runtime settings plus its own (prefix LIKENESS_)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
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

    # RunPod serverless running worker-comfyui: the endpoint's URL (https://api.runpod.ai/v2/<endpoint id>).
    runpod_url: str | None = None
    runpod_api_key: SecretStr = SecretStr("")
    # An OpenAI-compatible image edit API (POST <url>/images/edits), e.g. https://api.openai.com/v1.
    image_api_url: str | None = None
    image_api_key: SecretStr = SecretStr("")
    image_api_model: str = "gpt-image-1"
    # Which engines render which jobs, in order of preference: {"style:<name>" | "model:<name>" | "default":
    # [engine, ...]} with engines "comfyui", "runpod", "openai-images". Unrouted jobs try every engine set up.
    render_routes: dict[str, tuple[str, ...]] = {}
    # Renders lost by the infrastructure after queueing (a backend restart) run again with the same seed.
    render_infra_retries: int = Field(default=2, ge=0, le=10)
    # Names this process's upload slots on the backends (a pod name is a good one).
    renderer_instance: str = Field(default_factory=lambda: socket.gethostname() or "renderer",
                                   pattern=r"^[A-Za-z0-9_.-]{1,64}$")

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
    # With ComfyUI backends: RenderStep jobs this process holds at once (rendering, or waiting for the fair
    # scheduler to grant them a backend). Only jobs held here can be reordered, so keep it above the
    # largest batch one user sends; their messages stay in progress at JetStream while they wait.
    # (At most the consumer's max_ack_pending, 1000: JetStream hands out no more unacked messages than that.)
    render_hold: int = Field(default=64, ge=1, le=1000)
    # Our jobs at once on one ComfyUI backend: it runs one prompt at a time, and a second one queued there
    # is out of the scheduler's reach (2 hides the upload of the next input behind the running render).
    backend_slots: int = Field(default=1, ge=1, le=64)
    # How many times in a row the fair scheduler may pass a user over for a job whose model a free backend
    # has loaded (fewer model swaps); 0: strict fair order.
    affinity_skips: int = Field(default=2, ge=0, le=100)
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

    @field_validator("runpod_url", "image_api_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _routes_name_engines_set_up(self) -> RendererSettings:
        # A route to an engine that is not set up stops the process now, not at the first job.
        named = {name for names in self.render_routes.values() for name in names}
        if missing := named - set(self.engines):
            raise ValueError(f"LIKENESS_RENDER_ROUTES names engines that are not set up: {sorted(missing)} "
                             f"(set up: {sorted(self.engines) or 'none'})")
        bad = [key for key in self.render_routes if key != "default" and not key.startswith(("style:", "model:"))]
        if bad:
            raise ValueError(f"LIKENESS_RENDER_ROUTES keys are 'default', 'style:<name>' or 'model:<name>', not {bad}")
        return self

    @property
    def engines(self) -> tuple[str, ...]:
        """The engines set up, in the order unrouted jobs try them."""
        return tuple(name for name, on in (("comfyui", self.comfyui_urls), ("runpod", self.runpod_url),
                                           ("openai-images", self.image_api_url)) if on)

    @property
    def consumer_workers(self) -> int:
        """Jobs handled at once: with ComfyUI, enough to hold `render_hold` (the scheduler limits the renders)."""
        return max(self.workers, self.render_hold) if self.comfyui_urls else self.workers

    @property
    def reconnect_give_up_s(self) -> float:
        """How long a backend may refuse the websocket mid-render before the attempt fails as unreachable."""
        return max(self.render_backend_wait_s, self.connect_timeout_s)
