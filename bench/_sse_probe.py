"""What bends first in bench/sse.py: samples, while events are driven, each party's CPU (the gateway, the
client processes, NATS, Postgres, this driver, and whatever else shares the machine), the run queue, the
sockets' queues (`ss`), the listen queue's overflow counters, and the gateway's event-loop lag seen from
outside (the round trip of GET /healthz on one kept-alive connection)."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field

import psutil

__all__ = ["Probe", "listen_backlog", "listen_drops", "pct"]

_HEALTH = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def listen_drops() -> tuple[int, int]:
    """The kernel's TcpExt ListenOverflows and ListenDrops counters (SYNs dropped: accept queue full)."""
    lines = [line.split() for line in open("/proc/net/netstat") if line.startswith("TcpExt:")]
    values = dict(zip(lines[0][1:], lines[1][1:]))
    return int(values["ListenOverflows"]), int(values["ListenDrops"])


def listen_backlog(port: int) -> str:
    """The listening socket's accept queue limit as the kernel applies it (`ss -ltn`: Send-Q)."""
    out = subprocess.run(["ss", "-Hltn", f"( sport = :{port} )"], capture_output=True, text=True, timeout=10).stdout
    return out.split()[2] if len(out.split()) > 2 else "?"


def _ss_queues(port: int) -> tuple[int, int, int, int]:
    """Bytes waiting in the gateway's send queues and in the clients' receive queues (sum, busiest socket)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} or dport = :{port} )"],
                         capture_output=True, text=True, timeout=10).stdout
    send_sum = send_max = recv_sum = recv_max = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        recv_q, send_q, local = int(parts[0]), int(parts[1]), parts[2]
        if local.endswith(f":{port}"):  # the gateway's end
            send_sum, send_max = send_sum + send_q, max(send_max, send_q)
        else:  # a client's end: what it has not read yet
            recv_sum, recv_max = recv_sum + recv_q, max(recv_max, recv_q)
    return send_sum, send_max, recv_sum, recv_max


@dataclass
class Probe:
    """Samples every `period_s` until stopped; `report()` prints what it saw."""

    port: int
    gateway: psutil.Process
    clients: list[psutil.Process]
    backends: list[psutil.Process] = field(default_factory=list)
    period_s: float = 1.0
    cpu: dict[str, float] = field(default_factory=dict)
    run_queue: list[int] = field(default_factory=list)
    queues: list[tuple[int, int, int, int]] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)

    def _groups(self) -> dict[str, list[psutil.Process]]:
        # Postgres forks a backend per connection: take the children as they are now, pools opened.
        backends = {p.pid: p for root in self.backends for p in (root, *_children(root))}
        return {"gateway": [self.gateway], "clients": self.clients, "driver (this)": [psutil.Process()],
                "nats+postgres": list(backends.values())}

    async def run(self, stop: asyncio.Event) -> None:
        groups = self._groups()
        times = {name: self._cpu_s(procs) for name, procs in groups.items()}
        machine = psutil.cpu_times()
        began = time.monotonic()
        rtt = asyncio.ensure_future(self._rtt(stop))
        while not stop.is_set():
            self.run_queue.append(_procs_running())
            self.queues.append(await asyncio.to_thread(_ss_queues, self.port))
            try:
                await asyncio.wait_for(stop.wait(), self.period_s)
            except TimeoutError:
                pass
        wall = time.monotonic() - began
        for name, procs in groups.items():
            self.cpu[name] = (self._cpu_s(procs) - times[name]) / wall * 100
        after = psutil.cpu_times()
        busy = (sum(after) - after.idle - after.iowait) - (sum(machine) - machine.idle - machine.iowait)
        self.cpu["machine (all)"] = busy / wall * 100
        self.cpu["others (not this run)"] = self.cpu["machine (all)"] - sum(
            v for k, v in self.cpu.items() if k != "machine (all)")
        await rtt

    @staticmethod
    def _cpu_s(procs: list[psutil.Process]) -> float:
        total = 0.0
        for proc in procs:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    async def _rtt(self, stop: asyncio.Event) -> None:
        """The gateway's loop lag from outside: a trivial request's round trip, every 20 ms."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
        try:
            while not stop.is_set():
                sent = time.perf_counter()
                writer.write(_HEALTH)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await asyncio.wait_for(reader.readexactly(length), 10)
                self.rtt_ms.append((time.perf_counter() - sent) * 1000)
                await asyncio.sleep(0.02)
        finally:
            writer.close()

    def report(self, client_lags_ms: list[float]) -> list[str]:
        lines = ["CPU while driving (% of one core): " + ", ".join(f"{k} {v:.0f}" for k, v in self.cpu.items())]
        if self.run_queue:
            lines.append(f"run queue (runnable tasks, 2 cores): mean {statistics.fmean(self.run_queue):.1f}, "
                         f"max {max(self.run_queue)}")
        if self.queues:
            lines.append("socket queues (bytes, worst sample): gateway send-q sum "
                         f"{max(q[0] for q in self.queues)} / busiest {max(q[1] for q in self.queues)}; "
                         f"clients' unread recv-q sum {max(q[2] for q in self.queues)} / busiest "
                         f"{max(q[3] for q in self.queues)}")
        for label, values in (("gateway loop lag (GET /healthz round trip)", self.rtt_ms),
                              ("client processes' loop lag (5 ms sleep overshoot)", client_lags_ms)):
            if values:
                lines.append(f"{label}: p50 {pct(values, 50):.1f}, p99 {pct(values, 99):.1f}, "
                             f"max {max(values):.1f} ms (n={len(values)})")
        return lines


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _procs_running() -> int:
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("procs_running"):
                return int(line.split()[1])
    return 0


if os.name != "posix":  # pragma: no cover - the bench reads /proc and runs ss
    raise RuntimeError("bench/sse.py needs Linux (/proc, ss)")
