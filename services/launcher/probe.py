"""Health probes behind `likeness status`: NATS connect, Postgres `SELECT 1`, each service's /healthz and /readyz."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import httpx
import psutil

from services.launcher.settings import RunInfo

__all__ = ["Probe", "probe_all", "probe_nats", "probe_postgres", "probe_service"]


@dataclass(frozen=True)
class Probe:
    """One row of the status table."""

    name: str
    pid: int | None
    address: str
    ok: bool
    detail: str

    def cells(self) -> tuple[str, str, str, str, str]:
        """The row as printable cells."""
        return self.name, str(self.pid or "-"), self.address, "ok" if self.ok else "FAIL", self.detail


async def probe_nats(url: str, timeout_s: float) -> tuple[bool, str]:
    """TCP connect and read the server's INFO greeting."""
    parts = urlsplit(url)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port or 4222), timeout_s)
        try:
            greeting = await asyncio.wait_for(reader.readline(), timeout_s)
        finally:
            writer.close()
    except (OSError, TimeoutError) as err:
        return False, f"connect failed: {err!r}"
    return (True, "connect ok") if greeting.startswith(b"INFO ") else (False, f"unexpected greeting {greeting[:40]!r}")


async def probe_postgres(url: str, timeout_s: float) -> tuple[bool, str]:
    """Connect with asyncpg and run SELECT 1."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
        try:
            value = await conn.fetchval("SELECT 1", timeout=timeout_s)
        finally:
            await conn.close(timeout=timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError) as err:
        return False, f"connect failed: {err!r}"
    return value == 1, "select 1 ok"


async def probe_service(client: httpx.AsyncClient, base_url: str) -> tuple[bool, str]:
    """GET /healthz and /readyz; ok when both answer 200."""
    codes = []
    for path in ("/healthz", "/readyz"):
        try:
            codes.append(str((await client.get(base_url + path)).status_code))
        except httpx.HTTPError as err:
            codes.append(type(err).__name__)
    return codes == ["200", "200"], f"healthz {codes[0]}, readyz {codes[1]}"


async def probe_all(info: RunInfo, timeout_s: float) -> list[Probe]:
    """Probe everything recorded in run.json concurrently."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        names = list(info.services)
        urls = [f"http://127.0.0.1:{svc.port}" for svc in info.services.values()]
        results = await asyncio.gather(
            probe_nats(info.nats_url, timeout_s),
            probe_postgres(info.database_url, timeout_s),
            *(probe_service(client, url) for url in urls),
        )
    rows = [Probe("nats", info.nats_pid, info.nats_url, *results[0]),
            Probe("postgres", info.postgres_pid, _without_password(info.database_url), *results[1])]
    for name, url, (ok, detail) in zip(names, urls, results[2:], strict=True):
        pid = info.services[name].pid
        if not psutil.pid_exists(pid):
            ok, detail = False, f"process {pid} is gone; {detail}"
        rows.append(Probe(name, pid, url, ok, detail))
    return rows


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
