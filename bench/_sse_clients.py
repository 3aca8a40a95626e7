"""The SSE client processes of bench/sse.py: many raw-socket SSE connections per process, cheap enough
that the figures are the server's and not the clients'.

Each connection is an asyncio Protocol (no task, no stream reader per connection: one callback per
chunk the kernel hands over), time-stamped on arrival; connections open at a bounded rate so the
gateway's accept backlog never overflows. Each process also measures its own event-loop lag (how late
a 5 ms sleep wakes up) and its CPU time, so a slow delivery can be told apart from a busy client.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import re
import resource
import time

__all__ = ["client_process", "quiet_collector", "raise_fd_limit", "start_clients"]

_ID = re.compile(rb"id: (\d+)\nevent: ")
_LAG_TICK_S = 0.005


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit (10,000 sockets need it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def quiet_collector() -> None:
    """Freeze what exists and stop cyclic collection: the bench's own processes (clients, driver) then
    never stall for a GC pass while they time arrivals, so a pause measured is the system's."""
    gc.collect()
    gc.freeze()
    gc.disable()


class _Stream(asyncio.Protocol):
    """One SSE connection: sends the GET, records (version, arrival) for every `id:` line."""

    __slots__ = ("closed", "request", "seen", "tail", "transport")

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.seen: list[tuple[int, float]] = []
        self.tail = b""
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        # A frame may straddle two reads: keep what follows the last complete `id:` line.
        buffer = self.tail + data if self.tail else data
        end = 0
        for match in _ID.finditer(buffer):
            self.seen.append((int(match.group(1)), now))
            end = match.end()
        self.tail = buffer[end:][-512:] if end else buffer[-512:]

    def connection_lost(self, exc) -> None:
        self.closed = True


def start_clients(port: int, key: str, chains: list[str], args: argparse.Namespace, cpu: int | None) -> tuple:
    """Start --client-procs processes holding --clients connections in all: (processes, ready, report, results)."""
    ctx = mp.get_context("spawn")
    ready, report, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs, start = [], 0
    for i in range(args.client_procs):
        count = args.clients // args.client_procs + (i < args.clients % args.client_procs)
        proc = ctx.Process(target=client_process, daemon=True, args=(
            port, key, chains, start, count, args.connect_rate / args.client_procs, cpu, ready, report, results))
        proc.start()
        procs.append(proc)
        start += count
    return procs, ready, report, results


def client_process(port: int, key: str, chains: list[str], start: int, count: int, connect_per_s: float,
                   cpu: int | None, ready, report, results) -> None:
    """Hold `count` SSE connections (client numbers start.., chains round-robin); report arrivals when asked."""
    raise_fd_limit()
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    import uvloop  # the clients' own loop: the cheapest there is, so they bend last

    uvloop.run(_clients(port, key, chains, start, count, connect_per_s, ready, report, results))


async def _clients(port: int, key: str, chains: list[str], start: int, count: int, connect_per_s: float, ready,
                   report, results) -> None:
    loop = asyncio.get_running_loop()
    streams: dict[int, _Stream] = {}
    failed = 0
    began = time.monotonic()
    for i, n in enumerate(range(start, start + count)):
        # Paced: at most connect_per_s new connections a second from this process.
        await asyncio.sleep(max(0.0, began + i / connect_per_s - time.monotonic()))
        request = (f"GET /chains/{chains[n % len(chains)]}/events HTTP/1.1\r\nHost: bench\r\n"
                   f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n").encode()
        for attempt in range(10):
            try:
                _, streams[n] = await asyncio.wait_for(
                    loop.create_connection(lambda r=request: _Stream(r), "127.0.0.1", port), 10)
                break
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05 * (attempt + 1))
        else:
            failed += 1
    ready.put({"connected": len(streams), "failed": failed, "seconds": time.monotonic() - began})
    quiet_collector()
    lags: list[float] = []
    stop = asyncio.Event()

    async def lag_probe() -> None:
        while not stop.is_set():
            asked = time.monotonic()
            await asyncio.sleep(_LAG_TICK_S)
            lags.append(time.monotonic() - asked - _LAG_TICK_S)

    probe = asyncio.ensure_future(lag_probe())
    cpu_before = time.process_time()
    await loop.run_in_executor(None, report.wait)
    cpu_s = time.process_time() - cpu_before
    stop.set()
    await probe
    for stream in streams.values():
        if stream.transport is not None:
            stream.transport.close()
    results.put({"arrivals": {n: streams[n].seen if n in streams else [] for n in range(start, start + count)},
                 "lags": lags, "cpu_s": cpu_s, "closed_early": sum(s.closed for s in streams.values())})
