"""The gateway of bench/sse.py. As a script, `python bench/_sse_gateway.py STATS.json` is
the real gateway (`python -m services.gateway`) with its cyclic-GC passes time-stamped and timed
(gc.callbacks), written as JSON to STATS.json when it exits.

With thousands of SSE streams open the gateway holds hundreds of thousands of tracked objects, so a
collector pass is the one pause of its event loop that grows with the number of streams.
--gc-threshold sets the gateway's LIKENESS_GC_FIRST_GENERATION (to compare)."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import json
import os
import resource
import runpy
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

__all__ = ["backend_processes", "launch_gateway", "wait_for_listeners"]


def launch_gateway(args: argparse.Namespace, nats_url: str, database_url: str, port: int,
                   cpu: int | None) -> tuple[subprocess.Popen, Path, Path, Path]:
    """Start the gateway (this file as a script) on `port`: the process, its tree, its log, its GC figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIKENESS_")}
    tree = Path(args.gateway_tree or Path(__file__).resolve().parent.parent)
    env.update(PYTHONPATH=str(tree), LIKENESS_NATS_URL=nats_url,
               LIKENESS_DATABASE_URL=database_url, LIKENESS_HTTP_HOST="127.0.0.1", LIKENESS_HTTP_PORT=str(port),
               LIKENESS_ENVIRONMENT="test", LIKENESS_GATEWAY_RATE_PER_S="1000000",
               LIKENESS_GATEWAY_RATE_BURST="1000000", LIKENESS_GATEWAY_ANONYMOUS_IMAGE_LIMIT="",
               LIKENESS_DB_POOL_SIZE="20", LIKENESS_EVENT_LOOP=args.event_loop)
    if args.backlog:
        env["LIKENESS_HTTP_BACKLOG"] = str(args.backlog)
    if args.gc_threshold:
        env["LIKENESS_GC_FIRST_GENERATION"] = str(args.gc_threshold)
    log_path = Path(args.log or "/tmp/likeness-bench-gateway.log")
    gc_stats = Path(f"/tmp/likeness-bench-gateway-gc-{os.getpid()}.json")
    with log_path.open("wb") as log:
        gateway = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(gc_stats)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=_preexec(cpu, args.gateway_nice))
    return gateway, tree, log_path, gc_stats


async def wait_for_listeners(base: str, clients: int, limit_s: float) -> tuple[float, int]:
    """Until the gateway's hub counts `clients` listeners (or `limit_s`): that count, and how many times
    /metrics went unanswered for 10 s (a stalled gateway)."""
    from bench._sse_figures import gauge

    started, listeners, stalls = time.monotonic(), 0.0, 0
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while time.monotonic() - started < limit_s:
            try:
                listeners = gauge((await http.get("/metrics")).text, "likeness_gateway_live_listeners")
            except httpx.TimeoutException:
                stalls += 1  # counted, and asked again
                continue
            if listeners >= clients:
                break
            await asyncio.sleep(0.2)
    return listeners, stalls


def _preexec(cpu: int | None, nice: int):
    """Runs in the gateway's process before exec: the open-file limit to the hard limit, its CPU, its priority."""
    def setup() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        if nice:
            os.nice(nice)
    return setup


def backend_processes(*urls: str) -> list[psutil.Process]:
    """The processes serving these URLs (NATS, Postgres), found by their listening port: other runs on the
    machine have their own, which must be neither pinned nor counted."""
    ports = {urlsplit(url).port for url in urls}
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports and conn.pid:
            proc = psutil.Process(conn.pid)
            found += [proc, *proc.children(recursive=True)]
    return list({p.pid: p for p in found}.values())


def _main() -> None:
    out = sys.argv[1]
    passes: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: []}
    started: list[float] = [0.0]

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            passes[info["generation"]].append((time.time(), time.perf_counter() - started[0]))

    def write() -> None:
        with open(out, "w") as stats:
            json.dump({"threshold": gc.get_threshold(), "passes": passes, "frozen": gc.get_freeze_count()}, stats)

    gc.callbacks.append(timed)
    atexit.register(write)
    sys.argv = [sys.argv[0]]
    runpy.run_module("services.gateway", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main()
