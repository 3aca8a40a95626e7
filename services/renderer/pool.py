"""The pool of ComfyUI backends: health probes, least-loaded choice, routing by model/style, idle VRAM freeing,
and the model each backend last ran for us (what the scheduler's affinity goes by).

Decisions are the pure functions of `backend_policy`; this module keeps the state and does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from services.renderer import metrics
from services.renderer.comfyui.http import ComfyHTTP
from services.renderer.errors import RenderError
from services.renderer.backend_policy import BackendView, available, foreign_load, preference, should_free

__all__ = ["Backend", "BackendPool"]

log = logging.getLogger(__name__)


@dataclass
class Backend:
    """One ComfyUI server and what this process knows of it."""

    url: str
    models: frozenset[str] = frozenset()
    styles: frozenset[str] = frozenset()
    healthy: bool = True
    down_reason: str | None = None
    in_flight: int = 0
    foreign: int = 0
    last_used: float = 0.0
    last_active: float | None = None
    freed: bool = True
    api: ComfyHTTP | None = field(default=None, repr=False)
    # Busy: at least one of our jobs in flight; `busy_s` sums the busy spells that ended.
    busy_s: float = 0.0
    busy_since: float | None = None
    # The model of the last job we started there: ComfyUI keeps it loaded until /free or a restart.
    # None: unknown (at start-up, after /free, after the backend was down). Other clients may load
    # other models meanwhile; we cannot see that, so it is a hint for affinity, never a promise.
    loaded: str | None = None

    def busy_seconds(self, now: float) -> float:
        """Seconds busy so far, the spell now running included."""
        return self.busy_s + (now - self.busy_since if self.busy_since is not None else 0.0)

    def view(self) -> BackendView:
        return BackendView(self.url, self.healthy, self.in_flight, self.foreign, self.last_used, self.models,
                           self.styles)


class BackendPool:
    """Chooses a backend per job and keeps the backends' health and load up to date."""

    def __init__(
        self,
        urls: Sequence[str],
        http: httpx.AsyncClient,
        *,
        serves: Mapping[str, tuple[Sequence[str], Sequence[str]]] | None = None,
        probe_timeout_s: float = 5.0,
        probe_interval_s: float = 15.0,
        idle_free_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        serves = serves or {}
        self.backends = {}
        for url in urls:
            models, styles = serves.get(url, ((), ()))
            backend = Backend(url.rstrip("/"), frozenset(models), frozenset(styles))
            backend.api = ComfyHTTP(backend.url, http, request_timeout_s=probe_timeout_s,
                                    connect_timeout_s=probe_timeout_s)
            self.backends[backend.url] = backend
        self.probe_interval_s = probe_interval_s
        self.idle_free_s = idle_free_s
        self._clock = clock
        # Called when a backend's health changes (the scheduler re-plans: a job may now try another one).
        self.on_change: Callable[[], None] | None = None
        metrics.watch(self)

    def now(self) -> float:
        """The pool's clock (busy spells are measured on it)."""
        return self._clock()

    def candidates(self, model: str, style: str | None) -> list[str]:
        """Backends to try for this job, best first; refuses a job no backend declares it serves."""
        order = preference([b.view() for b in self.backends.values()], model, style)
        if not order:
            declared = "; ".join(f"{b.url}: models {sorted(b.models) or 'any'}, styles {sorted(b.styles) or 'any'}"
                                 for b in self.backends.values())
            raise RenderError("validation", f"no ComfyUI backend serves model {model!r}"
                                            f"{f' in style {style!r}' if style else ''} ({declared})")
        return order

    @asynccontextmanager
    async def lease(self, url: str, model: str | None = None) -> AsyncIterator[Backend]:
        """Count a job as in flight on `url` while the block runs."""
        backend = self.reserve(url, model)
        try:
            yield backend
        finally:
            self.release(url)

    def reserve(self, url: str, model: str | None = None) -> Backend:
        """Count a job (of `model`) as in flight on `url` from now until `release`."""
        backend = self.backends[url]
        if backend.in_flight == 0:
            backend.busy_since = self._clock()
        backend.in_flight += 1
        backend.last_used = self._clock()
        backend.freed = False
        if model is not None:
            if backend.loaded is not None and backend.loaded != model:
                metrics.MODEL_SWAPS.labels(metrics.backend_label(url)).inc()
            backend.loaded = model
        return backend

    def release(self, url: str) -> None:
        backend = self.backends[url]
        backend.in_flight -= 1
        backend.last_active = self._clock()
        if backend.in_flight == 0 and backend.busy_since is not None:
            backend.busy_s += backend.last_active - backend.busy_since
            backend.busy_since = None

    def mark_down(self, url: str, reason: str) -> None:
        backend = self.backends[url]
        if backend.healthy:
            log.warning("ComfyUI backend %s is down: %s", url, reason)
        # It may come back restarted, with nothing loaded.
        backend.healthy, backend.down_reason, backend.loaded = False, reason, None
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def probe(self, backend: Backend) -> bool:
        """GET /system_stats (health) and GET /prompt (queue depth of every client)."""
        assert backend.api is not None
        try:
            await backend.api.system_stats()
            remaining = await backend.api.queue_remaining()
        except RenderError as exc:
            self.mark_down(backend.url, exc.reason)
            return False
        came_back = not backend.healthy
        if came_back:
            log.info("ComfyUI backend %s is back", backend.url)
        backend.healthy, backend.down_reason = True, None
        backend.foreign = foreign_load(remaining, backend.in_flight)
        if came_back:
            self._changed()
        return True

    async def probe_serving(self, model: str, style: str | None) -> list[str]:
        """Probe the backends that serve this job now; those that answered, best first."""
        urls = self.candidates(model, style)
        await asyncio.gather(*(self.probe(self.backends[url]) for url in urls))
        return available([b.view() for b in self.backends.values()], model, style)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(b) for b in self.backends.values()))

    async def free_idle(self) -> list[str]:
        """POST /free to each backend idle for `idle_free_s` since our last job there; returns their urls."""
        now, freed = self._clock(), []
        for backend in self.backends.values():
            if not backend.healthy or not should_free(in_flight=backend.in_flight, last_active=backend.last_active,
                                                      freed=backend.freed, now=now, idle_s=self.idle_free_s):
                continue
            assert backend.api is not None
            try:
                await backend.api.free()
            except RenderError as exc:
                log.info("could not free %s: %s", backend.url, exc.reason)
                continue
            # /free unloads the models: the next job there loads its own, whichever it is.
            backend.freed, backend.loaded = True, None
            freed.append(backend.url)
            log.info("asked idle ComfyUI backend %s to unload models and free memory", backend.url)
        return freed

    async def run(self) -> None:
        """Probe and free idle backends every `probe_interval_s`, until cancelled."""
        while True:
            await self.probe_all()
            await self.free_idle()
            await asyncio.sleep(self.probe_interval_s)
