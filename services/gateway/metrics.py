"""The gateway's Prometheus metrics: HTTP rate, errors and duration per route (prometheus-fastapi-instrumentator),
and the SSE streams open now.

Routes are labelled by their template (`/chains/{chain_id}/events`), never the raw path; a path no route
matches is "none". The instrumentator records a request when its response has ended, and
`should_exclude_streaming_duration` makes the duration the time to the response's start (its headers):
an SSE stream that stays open for an hour then counts as the few milliseconds it took to open, not as an
hour-long request, and no "in progress" gauge holds it (that gauge is left off; `likeness_sse_clients`
counts open streams instead). /metrics itself is served by `services.runtime.ops`, so `expose()` is never
called here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from fastapi import FastAPI
from prometheus_client import Gauge
from prometheus_fastapi_instrumentator import Instrumentator, metrics
from prometheus_fastapi_instrumentator.metrics import Info

__all__ = ["EXCLUDED_ROUTES", "SSE_CLIENTS", "instrument_http"]

SSE_CLIENTS = Gauge("likeness_sse_clients", "Server-Sent Event streams open on this gateway, by stream (chain, chat)",
                    ["stream"])

# Probes and scrapes would drown the API's own figures.
EXCLUDED_ROUTES = ("^/metrics$", "^/healthz$", "^/readyz$")
# Per route: API calls take milliseconds, uploads and waits (GET /wait/{id}) seconds.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@cache
def _http_metrics() -> Callable[[Info], None]:
    """The instrumentation's metrics, registered once per process however many apps are made (tests make many)."""
    instrumentation = metrics.default(metric_namespace="likeness", should_exclude_streaming_duration=True,
                                      latency_lowr_buckets=_DURATION_BUCKETS)
    if instrumentation is None:  # pragma: no cover - only if something else registered these names first
        raise RuntimeError("the likeness_http_* metrics are registered already by something else")
    return instrumentation


def instrument_http(app: FastAPI) -> None:
    """Add the RED middleware to `app`: likeness_http_requests_total{method,status,handler} and
    likeness_http_request_duration_seconds{method,handler}, in the default registry."""
    instrumentator = Instrumentator(should_group_status_codes=True, should_group_untemplated=True,
                                    excluded_handlers=list(EXCLUDED_ROUTES))
    instrumentator.add(_http_metrics())
    instrumentator.instrument(app)
