"""Text that Postgres cannot store, refused at the edge with a 422 that names the field.

Postgres text and jsonb hold no NUL character (U+0000), and UTF-8 has no lone surrogate (U+D800-DFFF,
which JSON can spell as an escape). Such text used to travel to the services, fail there on every
delivery (or as a 500 here) and be dead-lettered while the caller waited for a timeout. Checked once,
for every endpoint: the path, the query string and JSON bodies in `TextGuardMiddleware`, the text
fields of multipart forms in `uploads.Part.text`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.types import Message, Receive, Scope, Send

from services.gateway.errors import error_body
from services.gateway.http_middleware import HttpMiddleware

__all__ = ["TextGuardMiddleware", "unstorable"]


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored; remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (\\ud800-\\udfff), which is not valid Unicode text; remove it"
    return None


def _strings(document: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(document, str):
        yield path, document
    elif isinstance(document, dict):
        for key, value in document.items():
            yield from _strings(key, path or "body")  # a key is text too
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _strings(value, f"{path}.{index}" if path else str(index))


def problems_in(scope: Scope, body: bytes | None) -> list[dict[str, str]]:
    """Field errors (in the gateway's 422 `fields` shape) for every unstorable text of the request."""
    found = []
    path = scope.get("path", "")
    if (why := unstorable(path)) is not None:
        found.append({"field": "path", "message": why})
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" in query or "\x00" in unquote(query):
        for name, value in parse_qsl(query, keep_blank_values=True):
            for text in (name, value):
                if (why := unstorable(text)) is not None:
                    found.append({"field": name.replace("\x00", "\\u0000"), "message": why})
    if body:
        try:
            document = json.loads(body)
        except ValueError:
            return found  # not JSON: FastAPI's own validation answers
        found.extend({"field": field or "body", "message": why}
                     for field, text in _strings(document, "") if (why := unstorable(text)) is not None)
    return found


class TextGuardMiddleware(HttpMiddleware):
    """Refuses requests carrying unstorable text in the path, the query or a JSON body (422)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body: bytes | None = None
        messages: list[Message] = []
        if _is_json(scope):
            # JSON bodies are small (uploads are multipart): read whole, checked, then handed on unchanged.
            chunks = []
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        problems = problems_in(scope, body)
        if problems:
            await _refuse(send, problems)
            return
        await self.app(scope, _replaying(messages, receive), send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _refuse(send: Send, problems: list[dict[str, str]]) -> None:
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    body = json.dumps(error_body("invalid_request", f"{summary}.", fields=problems)).encode()
    await send({"type": "http.response.start", "status": 422,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
