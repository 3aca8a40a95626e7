"""Helpers shared by the gateway's integration tests: upload forms, JSON error bodies, SSE parsing,
making a character, chatting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from tests.faces import face_of


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


async def create_character(client: httpx.AsyncClient, name: str = "Mia", person: int = 0) -> dict:
    """A custom character made from the face of `person` (tests/faces.py); its JSON."""
    response = await client.post("/characters/upload-image", **form(face_of(person), name=name, gender="woman",
                                                                     occupation="pilot", art_style="photoreal"))
    assert response.status_code == 201, response.text
    return response.json()


async def chat(client: httpx.AsyncClient, **body) -> list[tuple[str, dict]]:
    """POST /chat/stream and read the whole SSE answer as (event, data) pairs."""
    async with client.stream("POST", "/chat/stream", json=body) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        return [(e.event, e.json()) async for e in sse_events(response.aiter_lines())]
