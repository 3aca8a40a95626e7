"""`likeness up` runs every service as its own process; `status` sees them; SIGTERM stops all; data survives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import psutil
import pytest

from services.launcher.embedded import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
SERVICES = {"gateway", "chat", "planner", "renderer", "facecheck", "delivery"}
UP_TIMEOUT_S = 180.0
DOWN_TIMEOUT_S = 90.0


class Up:
    """A `likeness up` subprocess whose stdout lines can be awaited."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.state_dir, self.port = state_dir, port
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIKENESS_")}
        env |= {"LIKENESS_STATE_DIR": str(state_dir), "LIKENESS_GATEWAY_PORT": str(port),
                "LIKENESS_STARTUP_TIMEOUT_S": str(UP_TIMEOUT_S - 30)}
        self.env = env
        self.stderr_path = state_dir.parent / f"up-{time.monotonic_ns()}.err"
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.launcher.cli", "up"], cwd=REPO, env=env,
                                         stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, expected: str, timeout_s: float) -> None:
        """Block until stdout prints `expected`; fail with up's stderr otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line == expected:
                return
            if line is None:
                break
        pytest.fail(f"`likeness up` did not print {expected!r}; stderr:\n{self.stderr_path.read_text()[-5000:]}")

    def run_json(self) -> dict:
        """The run.json written by up."""
        return json.loads((self.state_dir / "run.json").read_text())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another `likeness` command against the same state dir."""
        return subprocess.run([sys.executable, "-m", "services.launcher.cli", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=60)

    def terminate(self) -> int:
        """SIGTERM up and return its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=DOWN_TIMEOUT_S)

    def cleanup(self) -> None:
        """After a failed test: leave no process behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        try:
            info = self.run_json()
        except (OSError, ValueError):
            return
        pids = [svc["pid"] for svc in info["services"].values()] + [info["nats_pid"], info["postgres_pid"]]
        for pid in filter(None, pids):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


async def _sql(database_url: str, statement: str) -> object:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        return await conn.fetchval(statement, timeout=10)
    finally:
        await conn.close(timeout=10)


def _start(state_dir: Path) -> Up:
    port = free_port()
    up = Up(state_dir, port)
    up.wait_for_line(f"Likeness is up: http://127.0.0.1:{port}", UP_TIMEOUT_S)
    return up


def test_up_runs_services_as_processes_and_stops_cleanly(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()

    up = _start(state_dir)
    try:
        info = up.run_json()
        services = info["services"]
        assert set(services) == SERVICES
        pids = {name: svc["pid"] for name, svc in services.items()}
        assert len(set(pids.values())) == len(SERVICES)
        for name, pid in pids.items():
            proc = psutil.Process(pid)
            assert proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
            assert proc.ppid() == up.proc.pid
            assert f"services.{name}" in proc.cmdline()
        assert info["nats_pid"] and info["postgres_pid"]

        status = up.cli("status")
        assert status.returncode == 0, status.stdout + status.stderr

        asyncio.run(_sql(info["database_url"], "CREATE TABLE e2e_scratch (note text NOT NULL)"))
        asyncio.run(_sql(info["database_url"], "INSERT INTO e2e_scratch VALUES ('written in the first run')"))

        assert up.terminate() == 0
        for pid in [*pids.values(), info["nats_pid"], info["postgres_pid"]]:
            assert _gone(pid), f"pid {pid} still running after up exited"
        assert not (state_dir / "run.json").exists()
    finally:
        up.cleanup()

    again = _start(state_dir)
    try:
        note = asyncio.run(_sql(again.run_json()["database_url"], "SELECT note FROM e2e_scratch"))
        assert note == "written in the first run"
        assert again.terminate() == 0
        assert again.cli("status").returncode == 2
    finally:
        again.cleanup()
