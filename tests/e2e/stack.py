"""Processes for end-to-end tests: `likeness up` with chosen settings, and the fakes it talks to.

    stack = Stack(state_dir, env={"LIKENESS_COMFYUI_URLS": fake.url}).start()
    run = stack.edit(photo, "on a beach at sunset")      # `likeness edit` as a subprocess
    events = stack.events(run.chain_id)                  # the chain's stream, from the events table
    stack.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
import psutil

from services.runtime.blobs import BlobStore
from services.launcher.embedded import free_port
from services.runtime.settings import RuntimeSettings, to_asyncpg_dsn

__all__ = ["REPO", "Background", "EditRun", "Recorded", "Stack", "clean_env", "started"]

REPO = Path(__file__).resolve().parents[2]
CHAIN_SERVICES = ("planner", "renderer", "facecheck")
UP_TIMEOUT_S = 180.0
DOWN_TIMEOUT_S = 90.0
_SUBMITTED = re.compile(r"^chain ([0-9a-f-]{36}) submitted$", re.MULTILINE)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any LIKENESS_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIKENESS_")}
    return env | {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"} | extra


class Background:
    """A child process whose stdout lines can be awaited; stderr goes to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}-{time.monotonic_ns()}.err"
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, matches: Callable[[str], bool], timeout_s: float) -> str:
        """The first stdout line that `matches`; fails with the process's stderr if none comes in time."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                break
            if matches(line):
                return line
        raise AssertionError(f"{self.name} did not print the expected line within {timeout_s:.0f}s "
                             f"(exit code {self.proc.poll()}); stdout:\n" + "\n".join(self.stdout[-40:])
                             + f"\nstderr:\n{self.stderr()}")

    def stderr(self, limit: int = 5000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@dataclass(frozen=True)
class Recorded:
    """One event of a stream as the events table holds it."""

    version: int
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class EditRun:
    """What `likeness edit` did."""

    returncode: int
    stdout: str
    stderr: str
    chain_id: uuid.UUID


class Stack:
    """`likeness up` (embedded NATS and Postgres, each service its own process) with extra settings."""

    def __init__(self, state_dir: Path, *, env: dict[str, str] | None = None,
                 services: tuple[str, ...] | None = None) -> None:
        self.state_dir = state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        settings = {"LIKENESS_STATE_DIR": str(state_dir), "LIKENESS_GATEWAY_PORT": str(self.port),
                    "LIKENESS_STARTUP_TIMEOUT_S": str(UP_TIMEOUT_S - 30), **(env or {})}
        if services is not None:
            settings["LIKENESS_SERVICES"] = json.dumps(list(services))
        self.env = clean_env(**settings)
        self.cli_env = clean_env(LIKENESS_STATE_DIR=str(state_dir))
        self.up: Background | None = None
        self.info: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Stack:
        self.up = Background("likeness-up", [sys.executable, "-m", "services.launcher.cli", "up"], self.env,
                             self.state_dir.parent)
        expected = f"Likeness is up: http://127.0.0.1:{self.port}"
        try:
            self.up.wait_for_line(lambda line: line == expected, UP_TIMEOUT_S)
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}\n{self.logs()}") from None
        self.info = json.loads((self.state_dir / "run.json").read_text())
        return self

    def stop(self) -> None:
        """SIGTERM `up` (it stops the services, Postgres and NATS); kill whatever is left."""
        if self.up is None:
            return
        code = self.up.stop(DOWN_TIMEOUT_S)
        try:
            info = json.loads((self.state_dir / "run.json").read_text())
        except (OSError, ValueError):
            info = self.info
        if code != 0 or (self.state_dir / "run.json").exists():
            pids = [svc["pid"] for svc in info.get("services", {}).values()]
            pids += [info.get("nats_pid"), info.get("postgres_pid")]
            for pid in filter(None, pids):
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
        self.up = None

    # -- using it ----------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return self.info["database_url"]

    @property
    def nats_url(self) -> str:
        return self.info["nats_url"]

    def cli(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Another `likeness` command against this stack's state dir."""
        return subprocess.run([sys.executable, "-m", "services.launcher.cli", *args], check=False, cwd=REPO,
                              env=self.cli_env, capture_output=True, text=True, timeout=timeout_s)

    def edit(self, photo: Path, request: str, *, timeout_s: float = 120.0) -> EditRun:
        """`likeness edit --character <photo> <request>`: submit a chain and follow it to its end."""
        out = self.state_dir.parent / "edits"
        done = self.cli("edit", "--character", str(photo), request, "--timeout", str(timeout_s), "--out", str(out),
                        timeout_s=timeout_s + 60)
        found = _SUBMITTED.search(done.stdout)
        if found is None:
            raise AssertionError(f"`likeness edit` submitted no chain (exit {done.returncode}):\n{done.stdout}\n"
                                 f"{done.stderr}\n{self.logs()}")
        return EditRun(done.returncode, done.stdout, done.stderr, uuid.UUID(found.group(1)))

    def events(self, chain_id: uuid.UUID) -> list[Recorded]:
        """The chain's stream, oldest first, straight from the `events` table."""

        async def read() -> list[Recorded]:
            conn = await asyncpg.connect(to_asyncpg_dsn(self.database_url), timeout=10)
            try:
                rows = await conn.fetch("SELECT stream_version, type, data FROM events WHERE stream_id = $1 "
                                        "ORDER BY stream_version", f"chain-{chain_id}", timeout=10)
            finally:
                await conn.close(timeout=10)
            return [Recorded(row["stream_version"], row["type"], json.loads(row["data"])) for row in rows]

        return asyncio.run(read())

    def blob(self, sha256: str) -> bytes:
        """A blob from the stack's store (BlobStore.get checks the bytes hash to their name)."""

        async def get() -> bytes:
            nc = await nats.connect(self.nats_url, connect_timeout=5, max_reconnect_attempts=1)
            try:
                settings = RuntimeSettings(service_name="e2e", nats_url=self.nats_url, database_url=self.database_url)
                blobs = await BlobStore.open(nc.jetstream(), settings=settings)
                return await blobs.get(sha256)
            finally:
                await nc.drain()

        data = asyncio.run(get())
        assert hashlib.sha256(data).hexdigest() == sha256
        return data

    def log(self, service: str) -> str:
        return (self.state_dir / "logs" / f"{service}.log").read_text(errors="replace")

    def logs(self, limit: int = 3000) -> str:
        """The tail of every service log (for failure messages)."""
        parts = []
        for path in sorted((self.state_dir / "logs").glob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-limit:]}")
        return "\n".join(parts)


def started(stack: Stack) -> Iterator[Stack]:
    """`yield from started(Stack(...))` in a fixture: the stack up for the fixture's life, then down."""
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
