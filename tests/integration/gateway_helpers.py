"""Helpers shared by the gateway's integration tests: upload forms, JSON error bodies, SSE parsing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx


def form(image: bytes, filename: str = "face.png", **fields: str) -> dict:
    """Keyword arguments for a multipart upload of `image` with the given form fields."""
    return {"files": {"image": (filename, image, "application/octet-stream")}, "data": fields}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """Assert the gateway's JSON error shape, {"error": code, "detail": "..."}; return the body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def user_id(client: httpx.AsyncClient) -> str:
    return (await client.get("/me")).json()["user_id"]


@dataclass(frozen=True)
class Sse:
    id: int | None
    event: str
    data: str

    def json(self) -> dict:
        return json.loads(self.data)


async def sse_events(lines: AsyncIterator[str], on_comment: Callable[[str], None] | None = None) -> AsyncIterator[Sse]:
    """Each event of a text/event-stream, given its lines; comment lines (heartbeats) go to `on_comment`."""
    event_id, event, data = None, "message", []
    async for line in lines:
        if line == "":
            if data:
                yield Sse(int(event_id) if event_id else None, event, "\n".join(data))
            event_id, event, data = None, "message", []
        elif line.startswith(":"):
            if on_comment is not None:
                on_comment(line)
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id = value
            elif field == "event":
                event = value
            elif field == "data":
                data.append(value)
