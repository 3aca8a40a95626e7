"""`EmbeddedPostgres`: a PostgreSQL from the pgserver wheel's binaries, listening on 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import Literal, Self

import psutil

from services.launcher.embedded._common import HOST, EmbeddedError, Server, sticky_port, stop_process, tail

__all__ = ["EmbeddedPostgres"]

# Linux sun_path is 108 bytes including the NUL; leave headroom for the port digits.
_MAX_SOCKET_PATH = 100


def _pg_bin() -> Path:
    # Located without importing pgserver: its package import has side effects (runtime-dir warning).
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("pgserver is not installed; pip install pgserver")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _pgserver_utils() -> ModuleType:
    """pgserver's root helpers (user, permissions); its package import warns about XDG_RUNTIME_DIR, silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver.utils

    return pgserver.utils


class EmbeddedPostgres(Server):
    """A PostgreSQL from the pgserver wheel on 127.0.0.1; cluster in `data_dir/pgdata`, log in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database: str = "likeness",
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        self.port = port or 0
        self.database = database
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.pid: int | None = None
        # Postgres refuses to run as root; like pgserver, run it as a dedicated unprivileged user.
        self._os_user = "pgserver" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """SQLAlchemy URL, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/likeness."""
        return f"postgresql+asyncpg://postgres@{HOST}:{self.port}/{self.database}"

    def start(self) -> Self:
        """Init the cluster if new, start it (or adopt a live one), and create the database."""
        if self.pid is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not (self.pgdata / "PG_VERSION").exists():
            shutil.rmtree(self.pgdata, ignore_errors=True)  # half-done initdb from an interrupted run
            self._pg("initdb", ["-D", str(self.pgdata), "--auth=trust", "--auth-local=trust",
                                "--encoding=UTF8", "--locale=C", "-U", "postgres"], timeout_s=120)
        if not self._adopt_running():
            self._start_postmaster()
        self._ensure_database()
        return self

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """pg_ctl stop -m fast (or immediate: no shutdown checkpoint, as in a crash); kill the postmaster
        if that does not finish in time."""
        if self.pid is None:
            return
        try:
            args = ["-D", str(self.pgdata), "-m", mode, "-w", "-t", str(int(self.stop_timeout_s)), "stop"]
            self._pg("pg_ctl", args, timeout_s=self.stop_timeout_s + 5)
        except EmbeddedError:
            found = self._postmaster()  # re-checked, so a recycled pid is never signalled
            if found is not None:
                stop_process(found[0], 5)
        self.pid = None

    def alive(self) -> bool:
        found = self._postmaster()
        return found is not None and found[0].pid == self.pid

    def restart(self) -> Self:
        # The postmaster is gone: nothing to stop; start() adopts a live one or starts one on the same port.
        self.pid = None
        return self.start()

    def _postmaster(self) -> tuple[psutil.Process, list[str]] | None:
        """The live postmaster of our pgdata and its postmaster.pid lines, if any."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            proc = psutil.Process(int(lines[0]))
            if proc.name().startswith("postgres"):
                return proc, lines
        except (OSError, ValueError, IndexError, psutil.Error):
            pass
        return None

    def _adopt_running(self) -> bool:
        found = self._postmaster()
        if found is None:
            # A stale lock file whose pid now belongs to another process would make postgres refuse to start.
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            return False
        proc, lines = found
        if len(lines) >= 8 and lines[5].strip() == HOST and lines[7].strip() == "ready" and lines[3].strip():
            self.pid, self.port = proc.pid, int(lines[3])
            return True
        self.pid = proc.pid  # live but not reusable (other address, still starting): stop it cleanly
        self.stop()
        return False

    def _start_postmaster(self) -> None:
        self.port = self.port or sticky_port(self.data_dir / "port")
        # Five services' pools (size + overflow each) plus relays and tests outgrow the default of 100.
        options = ["-h", HOST, "-p", str(self.port), "-k", str(self._socket_dir()), "-c", "max_connections=300"]
        args = ["-D", str(self.pgdata), "-l", str(self.log_path), "-w", "-t", str(int(self.start_timeout_s)),
                "-o", shlex.join(options), "start"]
        try:
            self._pg("pg_ctl", args, timeout_s=self.start_timeout_s + 5)
        except EmbeddedError as err:
            raise EmbeddedError(f"{err}\npostgres log tail:\n{tail(self.log_path)}") from None
        found = self._postmaster()
        if found is None:
            raise EmbeddedError(f"postgres started but postmaster.pid is missing; log tail:\n{tail(self.log_path)}")
        self.pid = found[0].pid

    def _socket_dir(self) -> Path:
        if len(str(self.data_dir / f".s.PGSQL.{self.port}")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        # Too long for a unix socket: a short per-cluster dir under /tmp instead.
        short = Path("/tmp") / f"likeness-pg-{hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]}"
        short.mkdir(mode=0o700, exist_ok=True)
        self._chown(short)
        return short

    def _ensure_database(self) -> None:
        exists = self._pg("psql", ["-h", HOST, "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-tAc",
                                   f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"], timeout_s=15)
        if exists.strip() != "1":
            self._pg("createdb", ["-h", HOST, "-p", str(self.port), "-U", "postgres", self.database], timeout_s=30)

    def _prepare_permissions(self) -> None:
        if self._os_user is None:
            return
        utils = _pgserver_utils()
        utils.ensure_user_exists(self._os_user)
        utils.ensure_prefix_permissions(self.data_dir)
        utils.ensure_prefix_permissions(_pg_bin())
        readable = 0o044
        utils.ensure_folder_permissions(_pg_bin(), readable | 0o011)
        utils.ensure_folder_permissions(_pg_bin().parent / "lib", readable)
        self._chown(self.data_dir)
        if self.log_path.exists():
            self._chown(self.log_path)

    def _chown(self, path: Path) -> None:
        if self._os_user is not None:
            shutil.chown(path, self._os_user, self._os_user)

    def _pg(self, program: str, args: list[str], *, timeout_s: float) -> str:
        """Run a bundled Postgres program (as the unprivileged user under root); stdout on success."""
        # libpq reads PG* variables; a developer's PGHOST or PGDATA must not redirect us.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        user = {"user": self._os_user, "group": self._os_user, "extra_groups": []} if self._os_user else {}
        if self._os_user:
            # Another tool may have tightened a parent since start() (a new pytest session resets its
            # root-only basetemp to 0700); the unprivileged user must still traverse it.
            _pgserver_utils().ensure_prefix_permissions(self.data_dir)
        # A file, not a pipe: pg_ctl's daemon inherits it and would keep a pipe open forever.
        with tempfile.TemporaryFile("w+") as stdout:
            try:
                proc = subprocess.run([str(_pg_bin() / program), *args], stdout=stdout, stderr=subprocess.STDOUT,
                                      env=env, cwd=self.data_dir, timeout=timeout_s, start_new_session=True, **user)
            except subprocess.TimeoutExpired:
                raise EmbeddedError(f"{program} timed out after {timeout_s}s") from None
            stdout.seek(0)
            text = stdout.read()
        if proc.returncode != 0:
            raise EmbeddedError(f"{program} {' '.join(args)} failed ({proc.returncode}):\n{text.strip()}")
        return text
