"""10,000 SSE clients on ONE gateway process following live chains: delivery latency from an event's
commit to each client, next to the same updates seen by polling GET /chat/job/{id} every 3 s, and what
bends first when there are many (the clients, the kernel or the gateway).

    PYTHONPATH=. .venv/bin/python bench/sse.py [--clients 1000] [--chains 50] [--rate 40] [--seconds 20]
        [--client-procs N] [--connect-rate 1000] [--pin] [--gateway-nice N] [--backlog N] [--gc-threshold N]
        [--gateway-tree DIR] [--poll-s 3] [--steps 12] [--event-loop uvloop|asyncio]    (see --help)

Processes: embedded NATS + Postgres (bench/_backends.py); the REAL gateway, `python -m services.gateway`,
as its own process; --client-procs processes holding the SSE connections (bench/_sse_clients.py: one
asyncio Protocol per connection on uvloop, so the clients cost little next to the server); and this one,
which drives the chains and polls. Every process raises its open-file limit to the hard limit (10,000
sockets); connections open at --connect-rate a second in all, so the accept queue never overflows
(the kernel's ListenOverflows/ListenDrops counters are printed to show it). --pin puts the gateway alone
on the last CPU and everything else of this run on the others, to tell the gateway's time from the
clients'.

  driver   appends chain events to the log as the planner would (tests/fakes/gateway_world.ChainScript:
           requested, planned, then per step requested/rendered/scored/accepted), one event per
           transaction, round-robin over the chains at --rate events per second in all, and runs the
           outbox relay that publishes them (woken after each commit, as the planner's relay is).
           The commit time is taken when the append returns (wall clock).
  clients  --clients connections spread evenly over --chains chains, all one user (an API key), each
           GET /chains/{id}/events; every `id: <version>` line is time-stamped on arrival (wall clock).
  pollers  one per chain in this process, GET /chat/job/{id} every --poll-s seconds (random phase);
           a version is "seen" by polling at the first poll whose body reports it.
  probe    (bench/_sse_probe.py) each party's CPU, the run queue, `ss` socket queues, the gateway's loop
           lag (GET /healthz round trip), the client processes' loop lag, the gateway's GC passes.

Latency = arrival (or first poll that shows it) - commit, per delivery. It is split into commit -> a
core-NATS subscriber here (what the gateway's hub waits for too), the gateway's own share (hub received
-> frame taken by the HTTP server, its /metrics histogram), and per event the first and the last client's
arrival (the fan-out's spread). The gateway's RSS is read before and after the clients connect (MiB per
1,000 streams). Exactly-once is checked: every client must see every version after the one it connected
at, once, in order. Target: SSE p99 <= 50 ms (PASS/MISS printed). Figures only, no assertions; the run
time is bounded by --seconds plus a fixed allowance for start-up and drain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._backends import backends, machine, pg_settings
from bench._sse_clients import quiet_collector, raise_fd_limit, start_clients
from bench._sse_gateway import backend_processes, launch_gateway, wait_for_listeners
from bench._sse_figures import check_deliveries, gauge, gc_report, histogram, quantile_bound, row
from bench._sse_probe import Probe, listen_backlog, listen_drops, pct
from tests.fakes.gateway_world import ChainScript, Relay, png
from services.runtime.blobs import BlobStore
from services.runtime.database import create_engine
from services.launcher.embedded import free_port
from services.runtime.eventstore import EventStore
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ensure_streams

TARGET_P99_MS, _SETTLE_S, _MIB = 50.0, 3.0, 2**20


async def main(nats_url: str, database_url: str, args: argparse.Namespace) -> None:
    raise_fd_limit()
    settings = RuntimeSettings(service_name="bench", nats_url=nats_url, database_url=database_url,
                               db_pool_size=20)
    print(await pg_settings(database_url))
    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpu, rest_cpus = (cpus[-1], set(cpus[:-1])) if args.pin and len(cpus) > 1 else (None, None)
    backend_procs = backend_processes(nats_url, database_url)
    if rest_cpus:
        os.sched_setaffinity(0, rest_cpus)
        for proc in backend_procs:
            proc.cpu_affinity(sorted(rest_cpus))
    nc = await nats.connect(nats_url, connect_timeout=5)
    await ensure_streams(nc.jetstream(timeout=5))
    engine = create_engine(settings)
    store = EventStore(engine)
    blobs = await BlobStore.open(nc.jetstream(timeout=5), settings=settings)
    relay = Relay(database_url, nc.jetstream(timeout=5), store).start()

    port = free_port()
    gateway, tree, log_path, gc_stats = launch_gateway(args, nats_url, database_url, port, gateway_cpu)
    base = f"http://127.0.0.1:{port}"
    procs: list = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for _ in range(300):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"the gateway did not start; see {log_path}")
            signed = (await http.post("/auth/signup")).json()
            key, user = signed["api_key"], signed["user_id"]
        watched = psutil.Process(gateway.pid)
        print(f"gateway pid {gateway.pid} on :{port} from {tree}, event loop {args.event_loop} (log {log_path}); "
              f"user {user}; open files {watched.rlimit(psutil.RLIMIT_NOFILE)[0]}; "
              + (f"pinned: gateway on CPU {gateway_cpu}, the rest of this run on {sorted(rest_cpus)}"
                 if rest_cpus else "not pinned") + f"; gateway niceness {watched.nice()}")

        reference = await blobs.put_image(png((120, 80, 60), size=128))
        scripts = [ChainScript(store, blobs, user_id=user, character_id="bench", reference=reference,
                               steps=args.steps) for _ in range(args.chains)]
        for script in scripts:
            await script.advance(2)  # requested + planned: the chain exists and is owned
        chain_ids = [str(s.chain_id) for s in scripts]

        # Clients connect (paced) and replay what exists, then wait for live events.
        rss_before = watched.memory_info().rss
        drops_before = listen_drops()
        procs, ready, report, results = start_clients(port, key, chain_ids, args, min(rest_cpus) if rest_cpus else None)
        connect_started, connect_wall = time.monotonic(), time.time()
        opened = [await asyncio.to_thread(ready.get, True, 120 + args.clients / args.connect_rate) for _ in procs]
        listeners, stalls = await wait_for_listeners(base, args.clients, 60 + args.clients / args.connect_rate)
        overflows, drops = (a - b for a, b in zip(listen_drops(), drops_before))
        print(f"{int(listeners)} SSE listeners connected in {time.monotonic() - connect_started:.1f}s "
              f"({args.client_procs} client processes, {args.connect_rate:g}/s paced; "
              f"{sum(o['failed'] for o in opened)} failed); kernel ListenOverflows +{overflows}, "
              f"ListenDrops +{drops} (machine-wide; accept queue {listen_backlog(port)}); /metrics unanswered "
              f"for 10 s {stalls} times")
        await asyncio.sleep(_SETTLE_S)
        rss_connected = watched.memory_info().rss

        # Drive events and poll, for --seconds.
        commits: dict[tuple[str, int], float] = {}
        polls: dict[tuple[str, int], float] = {}
        stop = asyncio.Event()

        async def poll(chain: str) -> None:
            await asyncio.sleep(random.uniform(0, args.poll_s))
            seen = 2
            async with httpx.AsyncClient(base_url=base, timeout=10,
                                         headers={"Authorization": f"Bearer {key}"}) as http:
                while not stop.is_set():
                    version = (await http.get(f"/chat/job/{chain}")).json()["version"]
                    now = time.time()
                    for v in range(seen + 1, version + 1):
                        polls[(chain, v)] = now
                    seen = max(seen, version)
                    await asyncio.sleep(args.poll_s)

        # The baseline: the same events seen by one plain core-NATS subscriber (commit -> relay -> NATS -> here).
        on_nats: dict[tuple[str, int], float] = {}

        async def heard(msg) -> None:
            envelope = json.loads(msg.data)
            on_nats[(envelope["stream"].removeprefix("chain-"), envelope["seq"])] = time.time()

        baseline = await nc.subscribe("likeness.evt.chain.>", cb=heard)
        quiet_collector()
        pollers = [asyncio.ensure_future(poll(c)) for c in chain_ids]
        probe = Probe(port, watched, [psutil.Process(p.pid) for p in procs], backends=backend_procs)
        probe_stop = asyncio.Event()
        probing = asyncio.ensure_future(probe.run(probe_stop))
        interval = 1.0 / args.rate
        drive_window = [time.time(), 0.0]
        began = time.monotonic()
        sent = 0
        while time.monotonic() - began < args.seconds:
            script = scripts[sent % len(scripts)]
            if script.version + 1 < await script.length():  # keep the chains running: no terminal event
                version = await script.advance(1)
                commits[(str(script.chain_id), version)] = time.time()
            sent += 1
            await asyncio.sleep(max(0.0, began + sent * interval - time.monotonic()))
        driven = time.monotonic() - began
        drive_window[1] = time.time()
        probe_stop.set()
        await probing
        rss_end = watched.memory_info().rss
        await asyncio.sleep(args.poll_s + 1.0)  # the last events reach every client and one more poll
        stop.set()
        await asyncio.gather(*pollers, return_exceptions=True)
        await baseline.unsubscribe()
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            metrics = (await http.get("/metrics")).text
        report.set()
        arrivals: dict[int, list[tuple[int, float]]] = {}
        client_lags: list[float] = []
        client_cpu_s = closed_early = 0.0
        for _ in procs:
            got = await asyncio.to_thread(results.get, True, 120)
            arrivals.update(got["arrivals"])
            client_lags += [lag * 1000 for lag in got["lags"]]
            client_cpu_s += got["cpu_s"]
            closed_early += got["closed_early"]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        gateway.terminate()
        try:
            gateway.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gateway.kill()
        await relay.stop()
        await nc.drain()
        await engine.dispose()

    # -- figures ------------------------------------------------------------------------------------
    checked = check_deliveries(arrivals, chain_ids, commits)
    sse_ms = checked["latencies"]
    poll_ms = [(polls[k] - t) * 1000 for k, t in commits.items() if k in polls]
    nats_ms = [(on_nats[k] - t) * 1000 for k, t in commits.items() if k in on_nats]
    events = len(commits)
    print(f"\n{events} events committed in {driven:.1f}s ({events / driven:.1f}/s) over {args.chains} chains; "
          f"{len(arrivals)} SSE clients, {args.clients // args.chains} per chain "
          f"(~{events / driven * args.clients / args.chains:.0f} frames/s to write)")
    print(f"deliveries: {len(sse_ms)} of {events * args.clients // args.chains} expected; missing "
          f"{checked['missing']}, duplicates {checked['duplicates']}, out of order {checked['out_of_order']}; "
          f"{closed_early:.0f} streams closed by the gateway early")
    print(f"\n{'commit -> seen by':<34}{'n':>8}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}{'mean':>10}   (ms)")
    print(row("a core-NATS subscriber (baseline)", nats_ms))
    print(row("SSE: first client of each event", checked["first"]))
    print(row("SSE: last client of each event", checked["last"]))
    print(row("SSE client (every delivery)", sse_ms))
    print(row(f"polling /chat/job every {args.poll_s:g}s", poll_ms))
    inside = histogram(metrics, "likeness_gateway_sse_delivery_seconds")
    if inside:
        bounds = "  ".join(f"p{q} <= {quantile_bound(inside, q / 100) * 1000:g}" for q in (50, 90, 99))
        print(f"{'inside the gateway (hub -> frame sent)':<42}{bounds}   (ms, histogram bucket bounds)")
    for line in probe.report(client_lags):
        print(line)
    wall = driven + args.poll_s + 1.0 + _SETTLE_S
    print(gc_report(gc_stats, {"connecting": (connect_wall, drive_window[0]), "driving": tuple(drive_window)}))
    print(f"client processes: {client_cpu_s:.1f} CPU-s over ~{wall:.0f}s from connected to report "
          f"(~{client_cpu_s / wall * 100:.0f}% of one core)")
    if sse_ms and poll_ms:
        print(f"\npolling / SSE: p50 x{pct(poll_ms, 50) / max(pct(sse_ms, 50), 0.001):.0f}, "
              f"p99 x{pct(poll_ms, 99) / max(pct(sse_ms, 99), 0.001):.0f}")
    p99 = pct(sse_ms, 99)
    exact = checked["missing"] == checked["duplicates"] == checked["out_of_order"] == 0
    verdict = "PASS" if sse_ms and p99 <= TARGET_P99_MS and exact else "MISS"
    print(f"target SSE p99 <= {TARGET_P99_MS:g} ms, exactly once: {verdict} (p99 {p99:.1f} ms; exactly once "
          f"{'yes' if exact else 'NO'})")
    per_k = (rss_connected - rss_before) / _MIB / max(1, args.clients) * 1000
    print(f"gateway memory: RSS {rss_before / _MIB:.0f} MiB before the clients, {rss_connected / _MIB:.0f} MiB "
          f"with {args.clients} streams open, {rss_end / _MIB:.0f} MiB after driving: {per_k:.1f} MiB per "
          f"1,000 streams")
    print(f"gateway: {gauge(metrics, 'likeness_gateway_live_messages_total', family='evt.chain'):.0f} chain events "
          f"received; {gauge(metrics, 'likeness_gateway_live_lost_total'):.0f} live copies dropped for slow clients")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=50)
    parser.add_argument("--steps", type=int, default=12, help="steps per chain (each adds 4 events)")
    parser.add_argument("--rate", type=float, default=40.0, help="events per second over all chains")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--client-procs", type=int, default=None,
                        help="processes holding the client connections (default: one per 2,500 clients)")
    parser.add_argument("--connect-rate", type=float, default=1000.0,
                        help="new connections per second, all client processes together")
    parser.add_argument("--backlog", type=int, default=None,
                        help="the gateway's listen queue (LIKENESS_HTTP_BACKLOG; default: the gateway's own)")
    parser.add_argument("--pin", action="store_true",
                        help="the gateway alone on the last CPU, the rest of this run on the others")
    parser.add_argument("--gateway-nice", type=int, default=0,
                        help="the gateway's niceness (negative: ahead of other work on a shared machine; needs root)")
    parser.add_argument("--poll-s", type=float, default=3.0)
    parser.add_argument("--log", default=None, help="the gateway's log file")
    parser.add_argument("--gc-threshold", type=int, default=None,
                        help="the gateway's first-generation GC threshold (default: the gateway's own)")
    parser.add_argument("--gateway-tree", default=None,
                        help="run the gateway from this copy of the repository (e.g. the code before a change)")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the gateway's event loop (LIKENESS_EVENT_LOOP); run both to compare")
    args = parser.parse_args()
    if args.clients < 1 or args.chains < 1 or args.rate <= 0 or args.connect_rate <= 0:
        parser.error("--clients, --chains, --rate and --connect-rate must be positive")
    args.client_procs = args.client_procs or max(1, math.ceil(args.clients / 2500))
    return args


if __name__ == "__main__":
    arguments = _args()
    started = time.perf_counter()
    print(f"machine: {machine()}")
    with backends() as (nats_url, database_url):
        allowance = 240 + arguments.clients / arguments.connect_rate
        asyncio.run(asyncio.wait_for(main(nats_url, database_url, arguments), arguments.seconds + allowance))
    print(f"\ntotal {time.perf_counter() - started:.1f}s; machine at the end: {machine()}")
