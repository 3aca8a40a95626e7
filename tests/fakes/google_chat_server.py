"""A fake Google Chat incoming webhook: real HTTP on a real socket, the real URL shape, answers and failures.

    with FakeGoogleChat() as chat:
        url = chat.webhook_url("AAAA")   # http://127.0.0.1:PORT/v1/spaces/AAAA/messages?key=...&token=...

Speaks `POST /v1/spaces/<space>/messages?key=<key>&token=<token>[&requestId=<id>]` with a JSON message
(`text` and/or `cardsV2`), as spaces.messages.create does for an incoming webhook: the created message
back (`name`, `text`, `cardsV2`, `createTime`); a `requestId` already used in the space returns the message
it created instead of a second one. Errors are Google's `{"error": {"code", "message", "status"}}`:
403 PERMISSION_DENIED for a wrong key or token, 404 for an unknown space, 400 INVALID_ARGUMENT for a
message with neither text nor cards, or for JSON that is not an object. Scripted replies come first,
one per request: `ChatError.quota()` (429 RESOURCE_EXHAUSTED), `ChatError.unavailable()` (503), any
`ChatError(...)`, or `Hang(seconds)`. `messages(space)` lists the messages a space shows.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.threaded_server import Hang, ScriptedServer

__all__ = ["ChatError", "FakeGoogleChat", "Hang"]


@dataclass(frozen=True)
class ChatError:
    code: int
    status: str
    message: str
    retry_after: int | None = None

    @classmethod
    def quota(cls, retry_after: int | None = None) -> ChatError:
        return cls(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", retry_after)

    @classmethod
    def unavailable(cls) -> ChatError:
        return cls(503, "UNAVAILABLE", "The service is currently unavailable.")


class FakeGoogleChat(ScriptedServer[ChatError | Hang]):
    name = "fake-google-chat"

    def __init__(self, replies: list[ChatError | Hang] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(replies or [], host=host, port=port)
        # space -> (key, token); space -> messages shown; (space, requestId) -> message
        self._spaces: dict[str, tuple[str, str]] = {}
        self._shown: dict[str, list[dict[str, Any]]] = {}
        self._by_request: dict[tuple[str, str], dict[str, Any]] = {}

    def webhook_url(self, space: str) -> str:
        """A new space's incoming webhook URL (key and token as Google writes them)."""
        with self.lock:
            self._spaces.setdefault(space, (f"AIza{secrets.token_urlsafe(24)}", secrets.token_urlsafe(32)))
            key, token = self._spaces[space]
        return f"{self.base}/v1/spaces/{space}/messages?key={key}&token={token}"

    def messages(self, space: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._shown.get(space, []))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/spaces/{space}/messages", self._create, methods=["POST"])])

    async def _create(self, request: Request) -> JSONResponse:
        space = request.path_params["space"]
        status, body, headers = await self._answer(request, space)
        self.log({"space": space, "request_id": request.query_params.get("requestId"), "status": status})
        return JSONResponse(body, status_code=status, headers=headers)

    async def _answer(self, request: Request, space: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            credentials = self._spaces.get(space)
            scripted = self.replies.popleft() if self.replies else None
        if credentials is None:
            return _error(404, "NOT_FOUND", f"Space spaces/{space} not found.")
        if (request.query_params.get("key"), request.query_params.get("token")) != credentials:
            return _error(403, "PERMISSION_DENIED", "The caller does not have permission")
        if isinstance(scripted, Hang):
            await self.hang(request, scripted.seconds)
            return _error(504, "DEADLINE_EXCEEDED", "Deadline exceeded.")
        if scripted is not None:
            headers = {"Retry-After": str(scripted.retry_after)} if scripted.retry_after is not None else {}
            return (*_error(scripted.code, scripted.status, scripted.message)[:2], headers)
        try:
            message = json.loads(await request.body())
        except ValueError:
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not isinstance(message, dict) or not (message.get("text") or message.get("cardsV2")):
            return _error(400, "INVALID_ARGUMENT", "Message cannot be empty. Discarded message.")
        request_id = request.query_params.get("requestId")
        with self.lock:
            if request_id and (space, request_id) in self._by_request:
                return 200, self._by_request[(space, request_id)], {}
            created = {"name": f"spaces/{space}/messages/{uuid.uuid4().hex[:12]}", "text": message.get("text", ""),
                       "cardsV2": message.get("cardsV2", []),
                       "createTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            self._shown.setdefault(space, []).append(created)
            if request_id:
                self._by_request[(space, request_id)] = created
        return 200, created, {}


def _error(code: int, status: str, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return code, {"error": {"code": code, "message": message, "status": status}}, {}
