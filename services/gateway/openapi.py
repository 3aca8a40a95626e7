"""The OpenAPI document as the gateway really answers: every error in one JSON shape, every error status.

FastAPI documents 422 as its own `{"detail": [...]}` and nothing else; the gateway answers every error
(422 included) as `ErrorBody` (services.gateway.errors), and any endpoint may answer 401 (a bad API key),
422 (text that cannot be stored), 429 (rate limit) or 503 (database or bus away) besides its own errors.
So every operation gets 422 as `ErrorBody`, and the 4XX and 5XX ranges with `ErrorBody`, next to the
statuses it documents itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

__all__ = ["ErrorBody", "FieldError", "install_openapi"]

# Named here, not imported: the document describes the cookie, auth.py sets it (a test checks they agree).
_SESSION_COOKIE = "likeness_session"


class FieldError(BaseModel):
    field: str = Field(description="the request field that is wrong, e.g. `request` or `path`")
    message: str


class ErrorBody(BaseModel):
    """Every error the gateway answers."""

    error: str = Field(description="a stable code, e.g. `invalid_request`, `not_found`, `rate_limited`")
    detail: str = Field(description="what was wrong and how to fix it, for people")
    fields: list[FieldError] | None = Field(default=None, description="422 only: each invalid field")


_ERROR_RESPONSES = {
    "422": "the request is invalid: `fields` names each wrong field (text may not contain NUL characters)",
    "4XX": "the request cannot be served as sent (400 unreadable, 401 bad API key, 403 not allowed, 404 not "
           "found or not yours, 409 wrong state, 413 too large, 415 not an image, 429 too many requests)",
    "5XX": "the gateway or a service it needs is unavailable (503) or too slow (504); retry later",
}


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json and /docs) describe the answers the gateway really sends."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(body.pop("$defs", {}))
    schemas["ErrorBody"] = body
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            for status, description in _ERROR_RESPONSES.items():
                if status == "422" or status not in responses:
                    responses[status] = {"description": description, "content": error}
            for status, response in responses.items():
                # Statuses a route documents itself, without a body schema, answer ErrorBody too.
                if status[0] in "45" and "content" not in response:
                    response["content"] = error
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    # How a caller says who it is: an API key (the docs page's Authorize button), or the page's session
    # cookie; with neither, a guest session is made (hence the empty requirement).
    document["components"]["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "lk_...",
                   "description": "An API key from POST /auth/signup or POST /auth/keys."},
        "session": {"type": "apiKey", "in": "cookie", "name": _SESSION_COOKIE,
                    "description": "The web page's signed session cookie (a guest's, or a logged-in user's)."},
    }
    document["security"] = [{"apiKey": []}, {"session": []}, {}]
    return document
