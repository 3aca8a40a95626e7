"""`likeness up`: embedded NATS and Postgres, migrations, JetStream, then each service as its own process.

Errors: `StartupError` (RuntimeError) — a step of start-up failed; its message says which and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from services.launcher.embedded import EmbeddedError, EmbeddedNats, EmbeddedPostgres, free_port
from services.launcher.embedded._common import die_with_parent, stop_process, tail, wait_or_kill
from services.launcher.servers import WatchedServer
from services.launcher.settings import HOST, LauncherSettings, RunInfo, ServiceInfo
from services.runtime.logs import log_file

__all__ = ["ServiceProcess", "StartupError", "up"]

log = logging.getLogger("likeness")

_POLL_S = 0.5
# A service that stayed up this long has recovered: its restart budget is refilled.
_STABLE_S = 60.0
_MAX_BACKOFF_S = 30.0


class StartupError(RuntimeError):
    """A start-up step failed; the message says which and why."""


class _Interrupted(Exception):
    """SIGINT/SIGTERM arrived during start-up."""


class ServiceProcess:
    """One service (`python -m services.<name>`) as a child process with its own port, log and restart budget."""

    def __init__(self, name: str, port: int, env: dict[str, str], log_path: Path) -> None:
        self.name, self.port, self.env, self.log_path = name, port, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.restart_at: float | None = None

    @property
    def url(self) -> str:
        """Base HTTP URL of the service's health endpoints."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        """Spawn the process; output is appended to its log file."""
        with self.log_path.open("ab") as out:
            # Own session: a terminal Ctrl-C reaches only `up`, which then stops services in order.
            self.proc = subprocess.Popen([sys.executable, "-m", f"services.{self.name}"], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
        self.started_at, self.restart_at = time.monotonic(), None

    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return self.proc.poll() if self.proc else None

    def supervise(self, max_restarts: int) -> bool:
        """Restart the process with back-off if it died; True when it was restarted."""
        now = time.monotonic()
        code = self.exit_code()
        if code is None:
            if self.restarts and now - self.started_at > _STABLE_S:
                self.restarts = 0
            return False
        if self.restart_at is None:
            if self.restarts >= max_restarts:
                if self.restarts == max_restarts:
                    log.error("%s exited with %s; gave up after %d restarts, see %s", self.name, code,
                              max_restarts, self.log_path)
                    self.restarts += 1
                return False
            delay = min(2.0**self.restarts, _MAX_BACKOFF_S)
            log.warning("%s exited with %s; restarting in %.0fs (see %s)", self.name, code, delay, self.log_path)
            self.restart_at = now + delay
            return False
        if now < self.restart_at:
            return False
        self.restarts += 1
        self.start()
        log.info("%s restarted (pid %d, restart %d/%d)", self.name, self.proc.pid, self.restarts, max_restarts)
        return True


def up(settings: LauncherSettings) -> int:
    """Start everything, print the web address, supervise until SIGINT/SIGTERM; the process exit code."""
    state_dir = settings.state_dir.resolve()
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    _log_to_file(state_dir / "logs" / "up.log")
    stop = threading.Event()
    starting = True

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        # During start-up the main thread is blocked in some step: unwind it. Later, the loop sees `stop`.
        if starting:
            raise _Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _refuse_if_running(state_dir)
        _require_free_port(settings.gateway_port)
        with contextlib.ExitStack() as stack:
            stack.callback(RunInfo.remove, state_dir)
            try:
                info, services, servers = _start(settings, state_dir, stack)
            finally:
                starting = False
            print(f"Likeness is up: {info.gateway_url}", flush=True)
            while not stop.wait(_POLL_S):
                restarted = [server.supervise() for server in servers]
                restarted += [svc.supervise(settings.max_restarts) for svc in services]
                if any(restarted):
                    _record(info, services, servers).write(state_dir)
            log.info("stopping")
        log.info("stopped")
        return 0
    except _Interrupted as signame:
        log.info("interrupted by %s during start-up; stopped", signame)
        return 0
    except (StartupError, EmbeddedError) as err:
        log.error("%s", err)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _start(
    settings: LauncherSettings, state_dir: Path, stack: contextlib.ExitStack
) -> tuple[RunInfo, list[ServiceProcess], list[WatchedServer]]:
    """Everything up to ready services; cleanup of each step is pushed on `stack` as soon as it exists."""
    servers: list[WatchedServer] = []

    def embedded(name: str, label: str, server: EmbeddedNats | EmbeddedPostgres) -> str:
        stack.callback(server.stop)
        url = server.start().url
        servers.append(WatchedServer(name, server))
        log.info("embedded %s at %s (log %s)", label, url, server.log_path)
        return url

    timeout_s = settings.startup_timeout_s
    nats_url = settings.nats_url or embedded("nats", "NATS", EmbeddedNats(state_dir / "nats", start_timeout_s=timeout_s))
    database_url = settings.database_url or embedded(
        "postgres", "Postgres", EmbeddedPostgres(state_dir / "postgres", start_timeout_s=timeout_s))
    migrate(database_url)
    provision(nats_url, settings.startup_timeout_s)

    services = []
    ports = {settings.gateway_port}
    for name in settings.services:
        port = settings.gateway_port if name == "gateway" else unused_port(ports)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LIKENESS_NATS_URL": nats_url,
               "LIKENESS_DATABASE_URL": database_url, "LIKENESS_STATE_DIR": str(state_dir),
               "LIKENESS_HTTP_HOST": HOST, "LIKENESS_HTTP_PORT": str(port), "LIKENESS_SERVICE_NAME": name,
               # The delivery service's image links point at this gateway unless the operator says otherwise.
               "LIKENESS_PUBLIC_BASE_URL": os.environ.get("LIKENESS_PUBLIC_BASE_URL",
                                                          f"http://{HOST}:{settings.gateway_port}")}
        services.append(ServiceProcess(name, port, env, state_dir / "logs" / f"{name}.log"))
    stack.callback(_stop_services, services, settings.stop_timeout_s)
    for svc in services:
        svc.start()
    _wait_ready(services, settings.startup_timeout_s)

    info = RunInfo(pid=os.getpid(), state_dir=str(state_dir), nats_url=nats_url, database_url=database_url,
                   gateway_url=f"http://{HOST}:{settings.gateway_port}", services={})
    _record(info, services, servers).write(state_dir)
    return info, services, servers


def migrate(database_url: str) -> None:
    """Bring the event log schema to head."""
    from services.launcher.migrations import migrate as migrate_all

    try:
        migrate_all(database_url)
    except Exception as err:  # noqa: BLE001 — any failure here is a start-up failure, reported as such
        raise StartupError(f"migrations failed: {err!r}") from err
    log.info("migrations applied")


def provision(nats_url: str, timeout_s: float) -> None:
    """Create or update the JetStream streams and consumers."""
    from services.runtime.bus import provision as provision_bus

    try:
        asyncio.run(asyncio.wait_for(provision_bus(nats_url), timeout_s))
    except Exception as err:  # noqa: BLE001 — any failure here is a start-up failure, reported as such
        raise StartupError(f"JetStream provisioning failed on {nats_url}: {err!r}") from err
    log.info("JetStream provisioned")


def _wait_ready(services: list[ServiceProcess], timeout_s: float) -> None:
    pending = {svc.name: svc for svc in services}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while pending:
            for name, svc in list(pending.items()):
                code = svc.exit_code()
                if code is not None:
                    raise StartupError(f"{name} exited with {code} during start-up; {svc.log_path} tail:\n"
                                       f"{tail(svc.log_path)}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{svc.url}/readyz").status_code == 200:
                        log.info("%s ready at %s (pid %d)", name, svc.url, svc.proc.pid)
                        del pending[name]
            if pending and time.monotonic() > deadline:
                names = ", ".join(sorted(pending))
                raise StartupError(f"not ready after {timeout_s}s: {names}; see {services[0].log_path.parent}")
            time.sleep(0.1)


def _stop_services(services: list[ServiceProcess], timeout_s: float) -> None:
    """SIGTERM every service at once, then wait for all within one deadline, then SIGKILL stragglers."""
    running = [svc.proc for svc in services if svc.proc and svc.proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in running:
        wait_or_kill(proc, max(0.1, deadline - time.monotonic()))


def _record(info: RunInfo, services: list[ServiceProcess], servers: list[WatchedServer]) -> RunInfo:
    """run.json's view of what runs now: the live pids, after any restart."""
    info.services = {svc.name: ServiceInfo(pid=svc.proc.pid, port=svc.port, log=str(svc.log_path))
                     for svc in services if svc.proc}
    pids = {server.name: server.server.pid for server in servers}
    info.nats_pid, info.postgres_pid = pids.get("nats"), pids.get("postgres")
    return info


def _refuse_if_running(state_dir: Path) -> None:
    previous = RunInfo.read(state_dir)
    if previous is None:
        return
    if previous.up_alive():
        raise StartupError(f"already running (pid {previous.pid}) on {state_dir}; `likeness down` stops it")
    # `up` was killed outright: its services may still hold ports and consumers.
    for name, svc in previous.services.items():
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(svc.pid)
            if f"services.{name}" in proc.cmdline():
                log.warning("stopping %s (pid %d) left over from a previous run", name, svc.pid)
                stop_process(proc, 10)
    RunInfo.remove(state_dir)


def unused_port(taken: set[int]) -> int:
    """A free port not in `taken` (then added to it). A service binds its port only once it has started, so
    until then the kernel may offer the same free port again: two services of one run were given one port,
    and the second crash-looped on "address already in use" while the first answered its readiness probe."""
    while (port := free_port()) in taken:
        pass
    taken.add(port)
    return port


def _require_free_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR: connections of a previous run in TIME_WAIT must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            raise StartupError(f"port {port} is in use; set LIKENESS_GATEWAY_PORT to a free one") from None


def _log_to_file(path: Path) -> None:
    logging.getLogger("likeness").addHandler(log_file(path))
