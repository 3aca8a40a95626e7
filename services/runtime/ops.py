"""The operational endpoints every service serves: /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["ReadinessCheck", "add_ops_routes"]

ReadinessCheck = Callable[[], Awaitable[bool]]


def add_ops_routes(app: FastAPI, service: str, checks: Mapping[str, ReadinessCheck], *, timeout_s: float = 2.0) -> None:
    """Liveness says the process answers; readiness says its dependencies answer too."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"service": service, "status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        results = {name: await _probe(check, timeout_s) for name, check in checks.items()}
        ready = all(results.values())
        body = {"service": service, "ready": ready, "checks": {k: "ok" if v else "down" for k, v in results.items()}}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _probe(check: ReadinessCheck, timeout_s: float) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout_s)
    except Exception:  # noqa: BLE001 - a probe that raises is simply "not ready"
        return False
