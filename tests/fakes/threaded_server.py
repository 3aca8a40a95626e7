"""What the fake HTTP servers share: a uvicorn server on a real socket, run in a daemon thread or as a process.

A fake subclasses `ThreadedServer`, names itself (`name`, what `serve_forever` prints) and gives its ASGI `app()`.
Then `with Fake(...) as fake:` serves it from a daemon thread until the block ends (port 0 picks a free port,
`fake.port` is the one taken once started), and `Fake(...).serve_forever()` serves it in this thread until
SIGINT/SIGTERM, after printing `<name> listening on <url>` (`python -m tests.fakes.<module>` in end-to-end tests).
`log` records what a request held (under `lock`, and as a JSON line in `record` when given); `requests` reads it.
A `ScriptedServer` answers from a queue of scripted replies (`push` queues more; `Hang` is one that answers nothing),
and `add_fake_routes` lets a test outside the process read the log and queue replies over HTTP.
`process_arguments` and `read_script` start a fake's `main()`: its options, and the JSON script it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp

__all__ = ["Hang", "ScriptedServer", "ThreadedServer", "process_arguments", "read_script"]

R = TypeVar("R")


@dataclass(frozen=True)
class Hang:
    """Answer nothing for `seconds` (or until the client leaves or the server stops), then HTTP 504."""

    seconds: float = 3600.0


class ThreadedServer:
    """A fake's server plumbing and request log; subclasses give `name` and `app()`, and may override `url`."""

    name: ClassVar[str] = "fake"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, record: Path | None = None) -> None:
        self.host, self.port, self.record = host, port, record
        self.lock = threading.Lock()
        # Set when the server stops: a scripted hang ends then, not at its timeout.
        self.closing = threading.Event()
        self._requests: list[Any] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        """http://host:port, without a path."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL a client takes."""
        return self.base

    @property
    def requests(self) -> list[Any]:
        """What `log` recorded so far, oldest first."""
        with self.lock:
            return list(self._requests)

    def log(self, entry: Any) -> None:
        with self.lock:
            self._requests.append(entry)
            if self.record is not None:
                with self.record.open("a", encoding="utf-8") as file:
                    file.write(json.dumps(entry) + "\n")

    def app(self) -> ASGIApp:
        """The fake's HTTP app."""
        raise NotImplementedError

    async def hang(self, request: Request, seconds: float) -> None:
        """Answer nothing for `seconds`, or until the client leaves or the server stops."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.closing.is_set():
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.05)

    def _bind(self) -> tuple[socket.socket, uvicorn.Server]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        # A short graceful shutdown: a hanging request must not hold a test's teardown.
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=1)
        return sock, uvicorn.Server(config)

    def start(self) -> Self:
        sock, self._server = self._bind()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.closing.set()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM, after printing where."""
        sock, server = self._bind()
        # The socket already listens, so a client that reads this line can connect at once.
        print(f"{self.name} listening on {self.url}", flush=True)
        server.run(sockets=[sock])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ScriptedServer(ThreadedServer, Generic[R]):
    """A ThreadedServer that answers from `replies`, a queue of scripted replies of type R."""

    def __init__(self, replies: Iterable[R] = (), *, host: str = "127.0.0.1", port: int = 0,
                 record: Path | None = None) -> None:
        super().__init__(host=host, port=port, record=record)
        self.replies: deque[R] = deque(replies)

    def push(self, *replies: R) -> None:
        with self.lock:
            self.replies.extend(replies)

    def add_fake_routes(self, app: FastAPI, reply_from_json: Callable[[Any], R]) -> None:
        """`GET /_fake/requests` lists what was received, `POST /_fake/replies` (a JSON list) queues more."""

        @app.get("/_fake/requests")
        async def recorded() -> list[Any]:
            return self.requests

        @app.post("/_fake/replies")
        async def queue(request: Request) -> dict[str, int]:
            self.push(*(reply_from_json(value) for value in await request.json()))
            return {"queued": len(self.replies)}


def process_arguments(module: str, doc: str, script_help: str) -> argparse.ArgumentParser:
    """The options of `python -m <module>` every fake takes (--host, --port, --script); the fake adds its own."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help=script_help)
    return parser


def read_script(path: Path | None) -> dict[str, Any]:
    """The JSON script at `path`; {} without one."""
    return json.loads(path.read_text(encoding="utf-8")) if path else {}
