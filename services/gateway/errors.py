"""The gateway's HTTP errors: every one is a JSON body {"error": code, "detail": what and how to fix}.

    GatewayError                 (500 unless a subclass says otherwise)
    ├── BadRequest               400  the request cannot be read (bad multipart, bad header)
    ├── Unauthorized             401  an API key that is not valid
    ├── Forbidden                403  allowed for others, not for you (e.g. login required)
    ├── NotFound                 404  no such thing, or not yours (the two are not told apart)
    ├── Conflict                 409  the thing is not in a state that allows it (no reference yet)
    ├── PayloadTooLarge          413  over a size or pixel limit
    ├── UnsupportedMedia         415  not a JPEG, PNG or WebP image
    ├── Unprocessable            422  well-formed but wrong (no face found, unknown style)
    ├── RateLimited              429  too many requests; `Retry-After` says when to come back
    ├── Unavailable              503  a service the request needs is not answering
    └── UpstreamTimeout          504  a service took too long to answer

Validation errors of FastAPI become 422 with the same shape (plus `fields`), unknown routes 404,
and anything unexpected a 500 whose body says so without leaking internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.runtime.blobs import BlobCorrupt, BlobNotFound, BlobUnavailable
from services.runtime.faults import is_infrastructure_failure

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "GatewayError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UnsupportedMedia",
    "UpstreamTimeout",
    "error_body",
    "install_error_handlers",
]

log = logging.getLogger(__name__)


class GatewayError(Exception):
    """An error answered to the client as JSON; `code` is stable, `detail` is for people."""

    status = 500
    code = "internal"

    def __init__(self, detail: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(GatewayError):
    status, code = 400, "bad_request"


class Unauthorized(GatewayError):
    status, code = 401, "unauthorized"


class Forbidden(GatewayError):
    status, code = 403, "forbidden"


class NotFound(GatewayError):
    status, code = 404, "not_found"


class Conflict(GatewayError):
    status, code = 409, "conflict"


class PayloadTooLarge(GatewayError):
    status, code = 413, "too_large"


class UnsupportedMedia(GatewayError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(GatewayError):
    status, code = 422, "invalid_request"


class RateLimited(GatewayError):
    status, code = 429, "rate_limited"


class Unavailable(GatewayError):
    status, code = 503, "unavailable"


class UpstreamTimeout(GatewayError):
    status, code = 504, "timeout"


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through one JSON shape."""

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return _reply(exc.status, exc.code, exc.detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [_field_error(e) for e in exc.errors()]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5]) or "the request is invalid"
        detail = f"{summary}. Fix the named fields and send the request again (see /docs for the schema)."
        return _reply(422, "invalid_request", detail, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path} (see /docs for the API)"
            return _reply(404, "not_found", detail)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette's Allow names the first matching route's methods only; a path may have several routes.
            allowed = _methods_for(request)
            detail = (f"{request.method} is not allowed on {request.url.path}; it takes {', '.join(allowed)} "
                      "(see /docs)")
            return _reply(405, "method_not_allowed", detail, headers={**(headers or {}), "Allow": ", ".join(allowed)})
        code = "bad_request" if 400 <= exc.status_code < 500 else "internal"
        return _reply(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(BlobNotFound)
    async def blob_missing(_: Request, exc: BlobNotFound) -> JSONResponse:
        return _reply(404, "image_missing", f"the image is not in the blob store: {exc}")

    @app.exception_handler(BlobUnavailable)
    async def blob_unavailable(request: Request, exc: BlobUnavailable) -> JSONResponse:
        # The bucket is away or refuses us (S3 down, credentials rotated): the operator's to fix, the client's
        # to retry; never a bare 500.
        log.warning("%s %s: the blob store is unavailable: %s", request.method, request.url.path, exc)
        return _reply(503, "blob_store_unavailable", "the image store is briefly unavailable; retry in a few seconds",
                      headers={"Retry-After": "5"})

    @app.exception_handler(BlobCorrupt)
    async def blob_corrupt(request: Request, exc: BlobCorrupt) -> JSONResponse:
        # Stored bytes that no longer hash to their name are never handed out.
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _reply(502, "image_corrupt", "the stored image failed its integrity check and is not served; "
                      "it is logged for the operator")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_infrastructure_failure(exc):
            # Postgres or NATS is away (a restart, a failover): the client should simply retry.
            log.warning("%s %s: the database or the bus is unavailable (%s: %s)", request.method,
                        request.url.path, type(exc).__name__, exc)
            return _reply(503, "unavailable", "the database or the message bus is briefly unavailable; retry in a "
                          "few seconds", headers={"Retry-After": "2"})
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        detail = "the gateway failed unexpectedly; the error is logged. Retry, and report it if it persists."
        return _reply(500, "internal", detail)


def _methods_for(request: Request) -> list[str]:
    path, methods = request.url.path, set()
    for route in request.app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


def _reply(status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, detail, **extra), status_code=status, headers=headers)


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    # ("body", "from_step") -> "from_step"; the location kind is implied by the endpoint.
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header", "cookie")]
    return {"field": ".".join(loc) or "body", "message": str(error.get("msg", "invalid"))}
