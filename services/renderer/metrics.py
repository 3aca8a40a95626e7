"""The renderer's Prometheus metrics: renders by outcome, jobs waiting for a backend, backend busy time and health.

Busy time is a counter per backend (seconds during which at least one of this process's jobs ran there):
`rate(likeness_backend_busy_seconds_total[5m])` is the busy ratio, which averages honestly over any window,
where a sampled gauge would miss short renders. It is read from the pools at scrape time (`BackendCollector`),
so a render that is still running counts up to now, not only once it ends.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.runtime.metrics import label_value, observe_step_phase

__all__ = ["JOBS_IN_FLIGHT", "MODEL_SWAPS", "QUEUE_DEPTH", "RENDERS", "SCHEDULED", "BackendCollector", "backend_label", "record_render", "watch"]

RENDERS = Counter("likeness_renders_total", "Renders this process ran, by engine and outcome (completed, or the "
                  "RenderFailed error kind)", ["engine", "outcome"])
QUEUE_DEPTH = Gauge("likeness_renderer_queue_depth", "Jobs this process holds that wait for a render backend to "
                    "come back (none can take them now)")
SCHEDULED = Gauge("likeness_renderer_scheduled_jobs", "Jobs this process holds that wait for a free backend slot "
                  "(the fair scheduler's queue; backends are up but busy)")
MODEL_SWAPS = Counter("likeness_renderer_model_swaps_total", "Jobs started on a backend whose last job of ours used "
                      "another model (the backend has to load this one)", ["backend"])
JOBS_IN_FLIGHT = Gauge("likeness_renderer_jobs_in_flight", "Jobs this process holds: rendering, or waiting for a "
                       "backend slot or for a backend to come back")


class _Backend(Protocol):
    healthy: bool
    in_flight: int

    def busy_seconds(self, now: float) -> float: ...


class _Pool(Protocol):
    backends: Mapping[str, _Backend]

    def now(self) -> float: ...


_pools: weakref.WeakSet[_Pool] = weakref.WeakSet()


def watch(pool: _Pool) -> None:
    """Report this pool's backends at every scrape, for as long as the pool lives."""
    _pools.add(pool)


def backend_label(url: str) -> str:
    """A backend's URL as a label: without credentials, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return label_value(urlunsplit((parts.scheme, netloc, "", "", "")) if netloc else url, limit=120)


def record_render(engine: str, outcome: str, *, seconds: float | None = None,
                  timings: Mapping[str, float] | None = None) -> None:
    """Count one render; a completed one also records its phases (the engine's timings are milliseconds)."""
    RENDERS.labels(label_value(engine), outcome).inc()
    if outcome != "completed":
        return
    observe_step_phase("render", engine, seconds)
    timings = timings or {}
    for phase, key in (("queue", "queue"), ("wait", "backend_wait")):
        if key in timings:
            observe_step_phase(phase, engine, timings[key] / 1000)


class BackendCollector(Collector):
    """likeness_backend_busy_seconds_total, likeness_backend_up and likeness_backend_in_flight per backend."""

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        busy, up, in_flight = self._families()
        totals: dict[str, list[float]] = {}
        for pool in list(_pools):
            now = pool.now()
            for url, backend in list(pool.backends.items()):
                # Two pools in one process (tests) may share a backend: their figures add up.
                figures = totals.setdefault(backend_label(url), [0.0, 0.0, 0.0])
                figures[0] += backend.busy_seconds(now)
                figures[1] = max(figures[1], 1.0 if backend.healthy else 0.0)
                figures[2] += backend.in_flight
        for label, (busy_s, healthy, jobs) in sorted(totals.items()):
            busy.add_metric([label], busy_s)
            up.add_metric([label], healthy)
            in_flight.add_metric([label], jobs)
        yield from (busy, up, in_flight)

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            CounterMetricFamily("likeness_backend_busy_seconds", "Seconds during which at least one of this "
                                "process's jobs ran on the backend", labels=["backend"]),
            GaugeMetricFamily("likeness_backend_up", "1 while the backend answers its health probe",
                              labels=["backend"]),
            GaugeMetricFamily("likeness_backend_in_flight", "This process's jobs on the backend now",
                              labels=["backend"]),
        )


REGISTRY.register(BackendCollector())
