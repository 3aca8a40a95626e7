"""A fake ComfyUI: the real HTTP routes and `/ws` protocol on a real 127.0.0.1 port (Starlette + uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.fakes.comfyui.graph import KNOWN_CLASSES, validate
from tests.fakes.comfyui.scenario import Scenario
from tests.fakes.comfyui.state import Conn, FakeState, Item
from tests.fakes.comfyui.worker import run_worker
from tests.fakes.multipart import parse_multipart

__all__ = ["FakeComfyUI", "closed_url"]

SYSTEM_STATS = {"system": {"os": "posix", "comfyui_version": "0.3.64", "python_version": "3.11.7", "embedded_python":
                           False, "argv": ["main.py", "--cpu"]},
                "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0}]}
_MEDIA = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


# Bound and never listening, for the life of the test process: the port refuses connections, and no
# other server (another test's fake) can be given it meanwhile.
_CLOSED_PORTS: list[socket.socket] = []


def closed_url() -> str:
    """The URL of a port nothing listens on: a backend that refuses connections."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _CLOSED_PORTS.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _release(port: int) -> None:
    for held in [s for s in _CLOSED_PORTS if port and s.getsockname()[1] == port]:
        _CLOSED_PORTS.remove(held)
        held.close()


class FakeComfyUI:
    """Start with `async with FakeComfyUI(scenario) as fake:`; `fake.url`, `fake.state` for assertions."""

    def __init__(self, scenario: Scenario | None = None, *, port: int = 0) -> None:
        self.scenario = scenario or Scenario()
        self.state = FakeState(self.scenario)
        self._port = port
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self.url = ""

    async def __aenter__(self) -> FakeComfyUI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> FakeComfyUI:
        _release(self._port)  # a backend coming back on the port `closed_url` held
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(128)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", ws="websockets-sansio",
                                ws_max_size=64 * 1024 * 1024, timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._tasks = [asyncio.create_task(self._server.serve(sockets=[sock])),
                       asyncio.create_task(run_worker(self.state))]
        while not self._server.started:
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        for conn in list(self.state.sockets.values()):
            with contextlib.suppress(Exception):
                await conn.ws.close()
        self._tasks[1].cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def app(self) -> Any:
        routes = [
            Route("/system_stats", self.system_stats), Route("/features", self.features),
            Route("/prompt", self.get_prompt, methods=["GET"]), Route("/prompt", self.post_prompt, methods=["POST"]),
            Route("/queue", self.queue, methods=["GET", "POST"]), Route("/interrupt", self.interrupt, methods=["POST"]),
            Route("/free", self.free, methods=["POST"]), Route("/history", self.history, methods=["GET", "POST"]),
            Route("/history/{prompt_id}", self.history_one), Route("/upload/image", self.upload, methods=["POST"]),
            Route("/view", self.view), WebSocketRoute("/ws", self.websocket),
        ]
        # Not ComfyUI's: what a test in another process asks the fake ("which prompts were sent?").
        fake_routes = [Route("/_fake/prompts", self.received_prompts)]
        app = Starlette(routes=[*routes, *fake_routes, Mount("/api", routes=routes)])

        async def maybe_hang(scope: Any, receive: Any, send: Any) -> None:
            if self.scenario.hang and scope["type"] in ("http", "websocket"):
                await asyncio.Event().wait()
            await app(scope, receive, send)

        return maybe_hang

    async def received_prompts(self, request: Request) -> Response:
        return JSONResponse([body.get("prompt_id") for body in self.state.prompts if isinstance(body, dict)])

    async def system_stats(self, request: Request) -> Response:
        return JSONResponse(SYSTEM_STATS)

    async def features(self, request: Request) -> Response:
        return JSONResponse({"supports_preview_metadata": True, "max_upload_size": 104857600})

    async def get_prompt(self, request: Request) -> Response:
        return JSONResponse({"exec_info": {"queue_remaining": self.state.queue_remaining}})

    async def post_prompt(self, request: Request) -> Response:
        state = self.state
        try:
            body = json.loads(await request.body())
        except ValueError:
            return PlainTextResponse("500 Internal Server Error\n\nServer got itself in trouble", status_code=500)
        state.number += 1  # counts rejected prompts too (§5.3)
        state.prompts.append(body)
        known = (KNOWN_CLASSES | self.scenario.extra_classes) - self.scenario.missing_classes
        status, answer, outputs = validate(body.get("prompt") if isinstance(body, dict) else None, known,
                                           state.file_exists)
        if status != 200:
            return JSONResponse(answer, status_code=status)
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        extra = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra["client_id"] = body["client_id"]
        state.pending.append(Item(state.number - 1, prompt_id, body["prompt"], extra, outputs))
        await state.broadcast(state.status())
        state.wakeup.set()
        return JSONResponse({"prompt_id": prompt_id, "number": state.number - 1, "node_errors": answer["node_errors"]})

    async def queue(self, request: Request) -> Response:
        state = self.state
        if request.method == "GET":
            running = [state.running.entry()] if state.running else []
            return JSONResponse({"queue_running": running, "queue_pending": [i.entry() for i in state.pending]})
        body = await _json(request)
        doomed = set(body.get("delete") or [])
        state.pending = [i for i in state.pending if i.prompt_id not in doomed and not body.get("clear")]
        await state.broadcast(state.status())
        return Response(status_code=200)

    async def interrupt(self, request: Request) -> Response:
        body, running = await _json(request), self.state.running
        if running is not None and body.get("prompt_id") in (None, running.prompt_id):
            self.state.interrupt_id = running.prompt_id
        return Response(status_code=200)

    async def free(self, request: Request) -> Response:
        body = await _json(request)
        self.state.free_calls.append(body)
        if body.get("free_memory"):
            self.state.cache = None
        return Response(status_code=200)

    async def history(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _json(request)
            for pid in body.get("delete") or []:
                self.state.history.pop(pid, None)
            if body.get("clear"):
                self.state.history.clear()
            return Response(status_code=200)
        return JSONResponse(self.state.history)

    async def history_one(self, request: Request) -> Response:
        pid = request.path_params["prompt_id"]
        entry = self.state.history.get(pid)
        return JSONResponse({pid: entry} if entry is not None else {})

    async def upload(self, request: Request) -> Response:
        fields = _multipart(request.headers.get("content-type", ""), await request.body())
        if "image" not in fields or fields["image"][0] is None:
            return Response(status_code=400)
        subfolder = fields.get("subfolder", (None, b""))[1].decode()
        kind = fields.get("type", (None, b"input"))[1].decode() or "input"
        if ".." in subfolder.split("/") or subfolder.startswith("/") or kind not in ("input", "temp", "output"):
            return Response(status_code=400)
        overwrite = fields.get("overwrite", (None, b""))[1].decode().lower() in ("true", "1")
        filename, data = fields["image"]
        name = self.state.upload(data, filename, subfolder, kind, overwrite)
        self.state.uploads.append({"name": name, "subfolder": subfolder, "type": kind, "overwrite": overwrite,
                                   "bytes": len(data)})
        return JSONResponse({"name": name, "subfolder": subfolder, "type": kind})

    async def view(self, request: Request) -> Response:
        q = request.query_params
        filename, subfolder, kind = q.get("filename", ""), q.get("subfolder", ""), q.get("type", "output")
        if not filename or ".." in filename or filename.startswith("/") or kind not in ("output", "input", "temp"):
            return Response(status_code=400)
        if ".." in subfolder:
            return Response(status_code=403)
        data = self.state.files.get((kind, subfolder, filename))
        if data is None:
            return Response(status_code=404)
        media = _MEDIA.get(filename.rpartition(".")[2].lower(), "application/octet-stream")
        return Response(data, media_type=media, headers={"Content-Disposition": f'filename="{filename}"'})

    async def websocket(self, ws: WebSocket) -> None:
        state = self.state
        client_id = ws.query_params.get("clientId") or uuid.uuid4().hex
        if client_id in state.held:
            state.held.discard(client_id)
            await asyncio.sleep(self.scenario.reconnect_hold_s)
        await ws.accept()
        conn = Conn(ws, client_id)
        state.sockets[client_id] = conn  # a second socket with the same id silently takes over (§6.7)
        state.connects.append(client_id)
        await ws.send_text(json.dumps(state.status(client_id)))
        running = state.running
        if running is not None and running.extra_data.get("client_id") == client_id and state.current_node:
            await ws.send_text(json.dumps({"type": "executing", "data": {"node": state.current_node}}))
        first = True
        try:
            while True:
                text = await ws.receive_text()
                message = _loads(text)
                if first and message.get("type") == "feature_flags":
                    conn.feature_flags = bool((message.get("data") or {}).get("supports_preview_metadata"))
                    await ws.send_text(json.dumps({"type": "feature_flags", "data": {
                        "supports_preview_metadata": True, "max_upload_size": 104857600}}))
                first = False
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            # Faithful to ComfyUI: closing any socket deletes the id's entry, even a newer socket's (§6.7).
            state.sockets.pop(client_id, None)


async def _json(request: Request) -> dict[str, Any]:
    body = _loads(await request.body())
    return body


def _loads(raw: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields as {name: (filename or None, bytes)}; {} for a body that is not multipart/form-data."""
    try:
        parts = parse_multipart(content_type, body)
    except ValueError:
        return {}
    return {part.name: (part.filename, part.data) for part in parts if part.name}
