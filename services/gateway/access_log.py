"""One log line per HTTP request: method, route template, status, duration and a hash of the user id.

The route template (`/chains/{chain_id}`), not the path, so lines group by endpoint and carry no ids a
user typed; the user as the first 12 hex digits of sha256(user id), enough to follow one user through the
log without the id itself. Headers (API keys, cookies) and query strings are never logged. Probes
(/healthz, /readyz, /metrics) are logged at DEBUG: an orchestrator asks every few seconds.
"""

from __future__ import annotations

import hashlib
import logging
import time

from starlette.types import Message, Receive, Scope, Send

from services.gateway.http_middleware import HttpMiddleware

__all__ = ["AccessLogMiddleware", "user_hash"]

log = logging.getLogger("likeness.gateway.access")
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:12]


class AccessLogMiddleware(HttpMiddleware):
    """Outermost middleware: logs when the response has been sent (for SSE, when the stream ends)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _template(scope)
            user = getattr((scope.get("state") or {}).get("user"), "id", None)
            fields = {"method": scope["method"], "route": route, "status": status,
                      "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                      "user": user_hash(user) if user else "-"}
            log.log(logging.DEBUG if route in _PROBES else logging.INFO,
                    "%(method)s %(route)s %(status)d %(duration_ms).1fms user=%(user)s", fields, extra={"http": fields})


def _template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return scope.get("root_path", "") + path if scope.get("root_path") else path
    if scope.get("path", "").startswith("/static/"):
        return "/static/{file}"
    return "(no route)"
