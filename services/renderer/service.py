"""Wiring of the renderer process: the engine (ComfyUI pool, or draft without backends) and the command consumer."""

from __future__ import annotations

import logging

import httpx

from contracts.envelope import Envelope
from contracts.render import RenderStep
from contracts.subjects import COMMANDS_STREAM, command_subject
from services.renderer.comfy_engine import ComfyUIEngine
from services.renderer.comfyui.client import Timeouts
from services.renderer.draft import DraftEngine
from services.renderer.engine import RenderEngine
from services.renderer.image_api_engine import ImageEditApiEngine
from services.renderer.pool import BackendPool
from services.renderer.rendering import Renderer
from services.renderer.routing import RoutedEngine
from services.renderer.runpod_engine import RunPodEngine
from services.renderer.settings import RendererSettings
from services.renderer.templates import BUILTIN_DIR, TemplateLibrary
from services.runtime.consumers import Consumer
from services.runtime.runner import Runtime
from services.runtime.streams import ConsumerSpec

__all__ = ["CONSUMER", "RendererService", "build_runtime"]

log = logging.getLogger(__name__)

CONSUMER = "renderer"


class RendererService:
    """Builds the engine at start-up (after NATS and the blob store are up) and handles RenderStep."""

    def __init__(self, settings: RendererSettings) -> None:
        self.settings = settings
        # Loaded now, so a bad template stops the process before it consumes anything.
        self.templates = TemplateLibrary.load([BUILTIN_DIR, settings.templates_dir])

        self.renderer: Renderer | None = None

    async def start(self, rt: Runtime) -> None:
        assert rt.blobs is not None, "the renderer needs the blob store"
        engine = self._engine(rt)
        self.renderer = Renderer(rt.bus, rt.blobs, engine, preview_max_bytes=self.settings.preview_max_bytes,
                                 preview_interval_s=self.settings.preview_interval_s)

    def consumer(self) -> Consumer:
        """RenderStep commands, `consumer_workers` at a time; in-progress acks keep a long render (or a long wait
        in the scheduler's queue) from redelivery."""
        consumer = Consumer(ConsumerSpec(CONSUMER, COMMANDS_STREAM, command_subject("render.step"),
                                         ack_wait_s=self.settings.ack_wait_s), workers=self.settings.consumer_workers)

        @consumer.on(RenderStep)
        async def on_render(job: RenderStep, envelope: Envelope) -> None:
            assert self.renderer is not None, "start() runs before any message is consumed"
            await self.renderer.render(job, envelope)

        return consumer

    def _engine(self, rt: Runtime) -> RenderEngine:
        s = self.settings
        if not s.engines:
            log.warning("no render engine is set up (LIKENESS_COMFYUI_URLS, LIKENESS_RUNPOD_URL, "
                        "LIKENESS_IMAGE_API_URL are empty): rendering with the DRAFT engine (no edit model; "
                        "pictures are labelled 'DRAFT — no edit model')")
            return DraftEngine()
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request drowns the service log
        http = httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=max(20, 4 * s.workers)))

        @rt.on_shutdown
        async def close_http(_: Runtime) -> None:
            # After the pool's loop was cancelled and in-flight renders finished.
            await http.aclose()

        engines: list[RenderEngine] = []
        if s.comfyui_urls:
            engines.append(self._comfyui(rt, http))
        if s.runpod_url:
            engines.append(RunPodEngine(self.templates, http, endpoint_url=s.runpod_url,
                                        api_key=s.runpod_api_key.get_secret_value(), deadline_s=s.render_timeout_s,
                                        request_timeout_s=s.request_timeout_s))
            log.info("rendering on RunPod endpoint %s", s.runpod_url)
        if s.image_api_url:
            engines.append(ImageEditApiEngine(http, base_url=s.image_api_url,
                                              api_key=s.image_api_key.get_secret_value(), model=s.image_api_model,
                                              deadline_s=s.render_timeout_s))
            log.info("rendering on the image edit API %s (model %s)", s.image_api_url, s.image_api_model)
        if len(engines) == 1 and not s.render_routes:
            return engines[0]
        routed = RoutedEngine(engines, s.render_routes)
        log.info("render routes: %s (unrouted jobs: %s)", s.render_routes or "none", ", ".join(routed.engines))
        return routed

    def _comfyui(self, rt: Runtime, http: httpx.AsyncClient) -> ComfyUIEngine:
        s = self.settings
        serves = {url.rstrip("/"): (d.models, d.styles) for url, d in s.comfyui_serves.items()}
        pool = BackendPool(s.comfyui_urls, http, serves=serves, probe_timeout_s=s.health_timeout_s,
                           probe_interval_s=s.health_interval_s, idle_free_s=s.idle_free_s)
        timeouts = Timeouts(connect_s=s.connect_timeout_s, request_s=s.request_timeout_s, poll_s=s.poll_interval_s,
                            reconnect_give_up_s=s.reconnect_give_up_s)
        rt.spawn(pool.run, "comfyui-pool")
        log.info("rendering on ComfyUI backends %s with templates %s", ", ".join(s.comfyui_urls),
                 ", ".join(self.templates.names))
        return ComfyUIEngine(pool, self.templates, http, timeouts=timeouts, deadline_s=s.render_timeout_s,
                             backend_wait_s=s.render_backend_wait_s, infra_retries=s.render_infra_retries,
                             instance=s.renderer_instance, backend_slots=s.backend_slots,
                             affinity_skips=s.affinity_skips)


def build_runtime(settings: RendererSettings) -> Runtime:
    """The renderer's runtime: blob store on, no database, the RenderStep consumer."""
    rt = Runtime(settings, database=False, relay=False, blobs=True)
    service = RendererService(settings)
    rt.on_startup(service.start)
    rt.bus.consume(service.consumer())
    return rt
