"""A fake Telegram Bot API: real HTTP on a real socket, the bot token in the path, the real answers and failures.

    with FakeTelegram(token="123:abc", chats={"42"}) as telegram:
        bot = Bot("123:abc", base_url=f"{telegram.url}/bot")

Speaks `POST /bot<token>/sendPhoto` (multipart/form-data: `chat_id`, `photo` file, `caption`) and
`POST /bot<token>/sendMessage` (form, multipart or JSON: `chat_id`, `text`), answering as Telegram does:
`{"ok": true, "result": <Message>}`, or `{"ok": false, "error_code": n, "description": "..."}` with that HTTP
status: 401 for a wrong token, 404 for an unknown method, 400 `chat not found` for a chat the bot is not
in (`chats`), 400 for a missing photo or an empty text. Scripted replies come first, one per request:
`BotError.flood(retry_after)` (429 with `parameters.retry_after`), `BotError.server()` (500), any
`BotError(code, description)`, or `Hang(seconds)`. `requests` lists every call: method, chat_id, caption or
text, the photo's sha256 and size, and the status answered.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.multipart import parse_multipart
from tests.fakes.threaded_server import Hang, ScriptedServer

__all__ = ["BotError", "FakeTelegram", "Hang"]


@dataclass(frozen=True)
class BotError:
    """One scripted failure, in the Bot API's own shape."""

    code: int
    description: str
    retry_after: int | None = None

    @classmethod
    def flood(cls, retry_after: int) -> BotError:
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    @classmethod
    def server(cls) -> BotError:
        return cls(500, "Internal Server Error")


class FakeTelegram(ScriptedServer[BotError | Hang]):
    name = "fake-telegram"

    def __init__(self, *, token: str, chats: set[str], replies: list[BotError | Hang] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(replies or [], host=host, port=port)
        self.token, self.chats = token, set(chats)
        self._ids = itertools.count(1)

    def sent(self, method: str | None = None) -> list[dict[str, Any]]:
        """The calls answered ok (what a user would see in the chat), oldest first."""
        return [r for r in self.requests if r["status"] == 200 and (method is None or r["method"] == method)]

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/bot{token}/{method}", self._call, methods=["POST"])])

    async def _call(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        fields, photo = await _fields(request)
        entry: dict[str, Any] = {"method": method, "chat_id": fields.get("chat_id"), "caption": fields.get("caption"),
                                 "text": fields.get("text"), "photo_sha256": None, "photo_bytes": 0}
        if photo is not None:
            entry.update(photo_sha256=hashlib.sha256(photo).hexdigest(), photo_bytes=len(photo))
        status, body = await self._answer(request, method, fields, photo)
        entry["status"] = status
        self.log(entry)
        return JSONResponse(body, status_code=status)

    async def _answer(self, request: Request, method: str, fields: dict[str, str],
                      photo: bytes | None) -> tuple[int, dict[str, Any]]:
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        if method not in ("sendPhoto", "sendMessage"):
            return _error(404, "Not Found")
        with self.lock:
            scripted = self.replies.popleft() if self.replies else None
        if isinstance(scripted, Hang):
            await self.hang(request, scripted.seconds)
            return _error(504, "Gateway Timeout")
        if scripted is not None:
            return _error(scripted.code, scripted.description, scripted.retry_after)
        chat_id = fields.get("chat_id", "")
        if chat_id not in self.chats:
            return _error(400, "Bad Request: chat not found")
        message = {"message_id": next(self._ids), "date": int(time.time()),
                   "chat": {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else -100, "type": "private"}}
        if method == "sendPhoto":
            if not photo:
                return _error(400, "Bad Request: there is no photo in the request")
            message["photo"] = [{"file_id": hashlib.sha256(photo).hexdigest()[:20], "file_unique_id": "u1",
                                 "width": 90, "height": 90, "file_size": len(photo)}]
            if fields.get("caption"):
                message["caption"] = fields["caption"]
        else:
            if not fields.get("text"):
                return _error(400, "Bad Request: message text is empty")
            message["text"] = fields["text"]
        return 200, {"ok": True, "result": message}


async def _fields(request: Request) -> tuple[dict[str, str], bytes | None]:
    """The call's parameters as Telegram reads them (form, multipart or JSON), and an uploaded photo."""
    body = await request.body()
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        fields, photo = {}, None
        for part in parse_multipart(kind, body):
            if part.filename is not None:
                photo = part.data
            else:
                fields[part.name] = part.data.decode()
        return fields, photo
    if kind.startswith("application/json"):
        return {k: str(v) for k, v in json.loads(body or b"{}").items()}, None
    return dict(parse_qsl(body.decode())), None


def _error(code: int, description: str, retry_after: int | None = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return code, body
