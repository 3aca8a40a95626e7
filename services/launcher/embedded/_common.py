"""Helpers shared by the embedded servers: ports, readiness polling, process stop, log tails."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

__all__ = [
    "HOST", "EmbeddedError", "Server", "die_with_parent", "free_port", "sticky_port", "stop_process", "tail",
    "wait_for_tcp", "wait_or_kill",
]

HOST = "127.0.0.1"


class EmbeddedError(RuntimeError):
    """An embedded server could not be found, started or stopped."""


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_tcp(host: str, port: int, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Poll until a TCP connect to host:port succeeds; False on timeout or when `alive()` turns False."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def sticky_port(path: Path) -> int:
    """The port recorded in `path` if it is still free, else a new free one; recorded for next time."""
    try:
        port = int(path.read_text())
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves bind
            sock.bind((HOST, port))
    except (OSError, ValueError):
        port = free_port()
    path.write_text(str(port))
    return port


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def stop_process(proc: psutil.Process | subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL."""
    try:
        proc.send_signal(signal.SIGTERM)
    except (ProcessLookupError, psutil.NoSuchProcess):
        return
    wait_or_kill(proc, timeout_s)


def wait_or_kill(proc: psutil.Process | subprocess.Popen, timeout_s: float) -> None:
    """Wait up to `timeout_s` for an already signalled process, then SIGKILL it."""
    # Never a second SIGTERM: uvicorn and nats-server take it as "skip the graceful part".
    try:
        proc.wait(timeout=timeout_s)
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        proc.kill()
        proc.wait(timeout=5)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies, so a killed launcher leaves no orphans."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Server:
    """Context-manager plumbing shared by both servers."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        """Whether the server process is still running (it may have been killed or crashed)."""
        raise NotImplementedError

    def restart(self) -> Self:
        """Start again after the process died, on the same port and data; raises EmbeddedError if it cannot."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
