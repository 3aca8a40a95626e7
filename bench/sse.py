"""1,000 SSE clients on ONE gateway process following live chains: delivery latency from an event's
commit to each client, next to the same updates seen by polling GET /chat/job/{id} every 3 s.

    PYTHONPATH=. .venv/bin/python bench/sse.py [--clients 1000] [--chains 50] [--rate 40] [--seconds 20]
                                                           [--client-procs N] [--poll-s 3] [--steps 12]
                                                           [--event-loop uvloop|asyncio]

Processes: embedded NATS + Postgres (bench/_backends.py); the REAL gateway, `python -m services.gateway`,
as its own process; --client-procs processes holding the SSE connections (raw asyncio sockets, so
the clients cost little next to the server); and this one, which drives the chains and polls.

  driver   appends chain events to the log as the planner would (tests/fakes/gateway_world.ChainScript:
           requested, planned, then per step requested/rendered/scored/accepted), one event per
           transaction, round-robin over the chains at --rate events per second in all, and runs the
           outbox relay that publishes them (woken after each commit, as the planner's relay is).
           The commit time is taken when the append returns (wall clock).
  clients  --clients connections spread evenly over --chains chains, all one user (an API key), each
           GET /chains/{id}/events; every `id: <version>` line is time-stamped on arrival (wall clock).
  pollers  one per chain in this process, GET /chat/job/{id} every --poll-s seconds (random phase);
           a version is "seen" by polling at the first poll whose body reports it.

Latency = arrival (or first poll that shows it) - commit, per delivery; the gateway's own share (its
live hub receiving the event -> the frame taken by the HTTP server) is read from its /metrics
histogram, to tell the gateway's time from the machine's. Exactly-once is checked too:
every client must see every version after the one it connected at, once, in order.
Target: SSE p99 <= 50 ms (PASS/MISS printed). Figures only, no assertions; the run time is bounded
by --seconds plus a fixed allowance for start-up and drain.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._backends import backends, machine, pg_settings
from tests.fakes.gateway_world import ChainScript, Relay, png
from services.runtime.blobs import BlobStore
from services.runtime.database import create_engine
from services.launcher.embedded import free_port
from services.runtime.eventstore import EventStore
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ensure_streams

TARGET_P99_MS = 50.0
_ID = re.compile(rb"id: (\d+)\nevent: ")
_SETTLE_S = 3.0


# -- the client processes -----------------------------------------------------------------------------


def client_process(port: int, key: str, chains: list[str], start: int, count: int, ready, report, results) -> None:
    """Hold `count` SSE connections (client numbers start.., chains round-robin); report arrivals when asked."""
    asyncio.run(_clients(port, key, chains, start, count, ready, report, results))


async def _clients(port: int, key: str, chains: list[str], start: int, count: int, ready, report,
                   results) -> None:
    arrivals: dict[int, list[tuple[int, float]]] = {}
    stop = asyncio.Event()

    async def one(n: int) -> None:
        chain = chains[n % len(chains)]
        seen = arrivals.setdefault(n, [])
        for attempt in range(20):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        else:
            return
        writer.write(f"GET /chains/{chain}/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        buffer = b""
        try:
            while not stop.is_set():
                data = await reader.read(65536)
                if not data:
                    break
                now = time.time()
                buffer += data
                matches = list(_ID.finditer(buffer))
                for match in matches:
                    seen.append((int(match.group(1)), now))
                if matches:
                    buffer = buffer[matches[-1].end():]
                elif len(buffer) > 1_000_000:
                    buffer = buffer[-1000:]
        finally:
            writer.close()

    tasks = [asyncio.ensure_future(one(n)) for n in range(start, start + count)]
    ready.put(count)
    # The measuring process must not pause itself: no collector passes while arrivals are timed.
    quiet_collector()
    await asyncio.get_running_loop().run_in_executor(None, report.wait)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put({n: arrivals.get(n, []) for n in range(start, start + count)})


def quiet_collector() -> None:
    """Freeze what exists and stop cyclic collection: the bench's own processes (clients, driver) then
    never stall for a GC pass while they time arrivals, so a pause measured is the system's."""
    gc.collect()
    gc.freeze()
    gc.disable()


# -- the driver -------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def row(label: str, values_ms: list[float]) -> str:
    if not values_ms:
        return f"{label:<34}{'(none)':>8}"
    return (f"{label:<34}{len(values_ms):>8}{pct(values_ms, 50):>10.1f}{pct(values_ms, 90):>10.1f}"
            f"{pct(values_ms, 99):>10.1f}{max(values_ms):>10.1f}{statistics.fmean(values_ms):>10.1f}")


async def main(nats_url: str, database_url: str, args: argparse.Namespace) -> None:
    settings = RuntimeSettings(service_name="bench", nats_url=nats_url, database_url=database_url,
                               db_pool_size=20)
    print(await pg_settings(database_url))
    nc = await nats.connect(nats_url, connect_timeout=5)
    await ensure_streams(nc.jetstream(timeout=5))
    engine = create_engine(settings)
    store = EventStore(engine)
    blobs = await BlobStore.open(nc.jetstream(timeout=5), settings=settings)
    relay = Relay(database_url, nc.jetstream(timeout=5), store).start()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIKENESS_")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parent.parent), LIKENESS_NATS_URL=nats_url,
               LIKENESS_DATABASE_URL=database_url, LIKENESS_HTTP_HOST="127.0.0.1", LIKENESS_HTTP_PORT=str(port),
               LIKENESS_ENVIRONMENT="test", LIKENESS_GATEWAY_RATE_PER_S="1000000",
               LIKENESS_GATEWAY_RATE_BURST="1000000", LIKENESS_GATEWAY_ANONYMOUS_IMAGE_LIMIT="",
               LIKENESS_DB_POOL_SIZE="20", LIKENESS_EVENT_LOOP=args.event_loop)
    log_path = Path(args.log or "/tmp/likeness-bench-gateway.log")
    with log_path.open("wb") as log:
        gateway = subprocess.Popen([sys.executable, "-m", "services.gateway"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    procs: list[mp.Process] = []
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
        print(f"gateway pid {gateway.pid} on :{port}, event loop {args.event_loop} (log {log_path}); user {user}")

        reference = await blobs.put_image(png((120, 80, 60), size=128))
        scripts = [ChainScript(store, blobs, user_id=user, character_id="bench", reference=reference,
                               steps=args.steps) for _ in range(args.chains)]
        for script in scripts:
            await script.advance(2)  # requested + planned: the chain exists and is owned
        chain_ids = [str(s.chain_id) for s in scripts]

        # Clients connect and replay what exists, then wait for live events.
        ctx = mp.get_context("spawn")
        ready, report, results = ctx.Queue(), ctx.Event(), ctx.Queue()
        per = [args.clients // args.client_procs + (i < args.clients % args.client_procs)
               for i in range(args.client_procs)]
        start = 0
        for count in per:
            proc = ctx.Process(target=client_process, args=(port, key, chain_ids, start, count, ready, report, results),
                               daemon=True)
            proc.start()
            procs.append(proc)
            start += count
        for _ in procs:
            ready.get(timeout=60)
        connect_started = time.monotonic()
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            while time.monotonic() - connect_started < 60:
                listeners = _gauge((await http.get("/metrics")).text, "likeness_gateway_live_listeners")
                if listeners >= args.clients:
                    break
                await asyncio.sleep(0.2)
        print(f"{int(listeners)} SSE listeners connected in {time.monotonic() - connect_started:.1f}s "
              f"({args.client_procs} client processes)")
        await asyncio.sleep(_SETTLE_S)

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
        watched = psutil.Process(gateway.pid)
        watched.cpu_percent()
        cpu_before = psutil.cpu_times()
        interval = 1.0 / args.rate
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
        gateway_cpu = watched.cpu_percent()
        gateway_rss = watched.memory_info().rss
        cpu_after = psutil.cpu_times()
        busy = 1 - (cpu_after.idle - cpu_before.idle) / max(1e-9, sum(cpu_after) - sum(cpu_before))
        await asyncio.sleep(args.poll_s + 1.0)  # the last events reach every client and one more poll
        stop.set()
        await asyncio.gather(*pollers, return_exceptions=True)
        await baseline.unsubscribe()
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            metrics = (await http.get("/metrics")).text
        report.set()
        arrivals: dict[int, list[tuple[int, float]]] = {}
        for _ in procs:
            arrivals.update(await asyncio.get_running_loop().run_in_executor(None, results.get, True, 60))
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        gateway.terminate()
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
        await relay.stop()
        await nc.drain()
        await engine.dispose()

    # -- figures ------------------------------------------------------------------------------------
    sse_ms: list[float] = []
    missing = duplicates = out_of_order = 0
    for n, seen in arrivals.items():
        chain = chain_ids[n % len(chain_ids)]
        versions = [v for v, _ in seen]
        expected = sorted(v for (c, v) in commits if c == chain)
        live = [v for v in versions if v > 2]
        duplicates += len(live) - len(set(live))
        out_of_order += sum(1 for a, b in zip(live, live[1:]) if b <= a)
        missing += len(set(expected) - set(live))
        for version, at in seen:
            if (chain, version) in commits:
                sse_ms.append((at - commits[(chain, version)]) * 1000)
    poll_ms = [(polls[k] - t) * 1000 for k, t in commits.items() if k in polls]
    nats_ms = [(on_nats[k] - t) * 1000 for k, t in commits.items() if k in on_nats]
    events = len(commits)
    print(f"\n{events} events committed in {driven:.1f}s ({events / driven:.1f}/s) over {args.chains} chains; "
          f"{len(arrivals)} SSE clients, {args.clients // args.chains} per chain")
    print(f"deliveries: {len(sse_ms)} of {events * args.clients // args.chains} expected; missing {missing}, "
          f"duplicates {duplicates}, out of order {out_of_order}")
    print(f"\n{'commit -> seen by':<34}{'n':>8}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}{'mean':>10}   (ms)")
    print(row("a core-NATS subscriber (baseline)", nats_ms))
    print(row("SSE client (live stream)", sse_ms))
    print(row(f"polling /chat/job every {args.poll_s:g}s", poll_ms))
    inside = _histogram(metrics, "likeness_gateway_sse_delivery_seconds")
    if inside:
        bounds = "  ".join(f"p{q} <= {_quantile_bound(inside, q / 100) * 1000:g}" for q in (50, 90, 99))
        print(f"{'inside the gateway (hub -> frame sent)':<42}{bounds}   (ms, histogram bucket bounds)")
    if sse_ms and poll_ms:
        print(f"\npolling / SSE: p50 x{pct(poll_ms, 50) / max(pct(sse_ms, 50), 0.001):.0f}, "
              f"p99 x{pct(poll_ms, 99) / max(pct(sse_ms, 99), 0.001):.0f}")
    p99 = pct(sse_ms, 99)
    verdict = "PASS" if sse_ms and p99 <= TARGET_P99_MS and missing == duplicates == 0 else "MISS"
    print(f"target SSE p99 <= {TARGET_P99_MS:g} ms, exactly once: {verdict} (p99 {p99:.1f} ms)")
    print(f"gateway process: {gateway_cpu:.0f}% of one CPU, {gateway_rss / 2**20:.0f} MiB; the machine's "
          f"{os.cpu_count()} CPUs {busy:.0%} busy while driving")
    print(f"gateway: {_gauge(metrics, 'likeness_gateway_live_messages_total', family='evt.chain'):.0f} chain "
          f"events received on one subscription per family; "
          f"{_gauge(metrics, 'likeness_gateway_live_lost_total'):.0f} live copies dropped for slow clients")


def _histogram(text: str, name: str) -> list[tuple[float, float]]:
    """(upper bound in seconds, cumulative count) of a Prometheus histogram in /metrics text."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    return sorted(buckets)


def _quantile_bound(buckets: list[tuple[float, float]], q: float) -> float:
    """The smallest bucket bound under which at least a fraction `q` of the observations fall."""
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= q * total)


def _gauge(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith(f"{name}_created"):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=50)
    parser.add_argument("--steps", type=int, default=12, help="steps per chain (each adds 4 events)")
    parser.add_argument("--rate", type=float, default=40.0, help="events per second over all chains")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--client-procs", type=int, default=max(1, min(4, (os.cpu_count() or 1) // 4)),
                        help="processes holding the client connections (default: a quarter of the CPUs, 1..4)")
    parser.add_argument("--poll-s", type=float, default=3.0)
    parser.add_argument("--log", default=None, help="the gateway's log file")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the gateway's event loop (LIKENESS_EVENT_LOOP); run both to compare")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _args()
    started = time.perf_counter()
    print(f"machine: {machine()}")
    with backends() as (nats_url, database_url):
        asyncio.run(asyncio.wait_for(main(nats_url, database_url, arguments), arguments.seconds + 240))
    print(f"\ntotal {time.perf_counter() - started:.1f}s; machine at the end: {machine()}")
