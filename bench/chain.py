"""Chains through the real planner and 1-4 simulated ComfyUI backends: backend duty cycle and the
orchestration overhead of each step transition, next to a raw JetStream hop measured the same way.

    PYTHONPATH=. .venv/bin/python bench/chain.py [--render-s 0.2] [--seconds 20] [--backends 1 2 4]
                                                 [--inflight-per-backend 4] [--planner-workers N]
                                                 [--planner-log FILE] [--async-commit]

Processes: embedded NATS + Postgres (bench/_backends.py); the REAL planner, `python -m services.planner`,
as its own process (rule-based plans: no LLM configured); and this process, which plays the
renderer, facecheck and the user:

  renderer (simulated)  durable pull consumer on likeness.cmd.render.step. Each RenderStep waits for a
                        free backend (an asyncio queue of K backends), holds it for --render-s seconds,
                        frees it and publishes RenderCompleted as services/renderer does (event id
                        derived from the command's, stream chain-<id>, correlation id copied), with an
                        output ImageRef of a small PNG stored in the blob store once; then acks.
  facecheck (simulated) durable pull consumer on likeness.cmd.face.score; answers FaceScored(score=90,
                        faces_found=1, encoder="bench") at once, as services/facecheck does.
  user                  submits RequestChain commands to JetStream (Nats-Msg-Id = event id), keeping
                        --inflight-per-backend x K chains in flight; a core-NATS subscription on
                        likeness.evt.chain.{completed,failed,refused,cancelled}.* counts the endings.

Every request reads "on a beach at sunset, in a red summer dress, sitting on a towel": the rule-based
planner makes 3 steps of it (background, outfit, pose), so each chain has two step transitions.

The simulated consumers issue their own pull requests (batch 1000, 2 s expiry, a new one every
second, so there is always one waiting) and see each message the moment it reaches the connection,
never held back to fill a batch; "received" is the first line of that callback. The baseline row
uses the same receiver on a subject of its own.

Measured (one clock: perf_counter, shifted to wall time so the planner's timestamps compare):
  duty cycle         per backend, the sum of its busy (render) intervals over the wall time from the
                     first render start to the last render end of the configuration; averaged over
                     backends. "steady" ends the window when the last chain was submitted, before the
                     run drains (fewer chains than backends left).
  transition         RenderCompleted of step k published (just before the publish call) -> RenderStep
                     of step k+1 of the same chain received. It holds four JetStream hops, two
                     planner appends (each: load, decide, commit, publish) and the facecheck.
    planner A        RenderCompleted published -> ScoreFace received
      A1             ... -> the planner's decision (occurred_at of StepRendered, the planner's clock):
                     delivery to the planner's consumer, decoding, loading the chain, deciding
      A2             decision -> the append's transaction start (recorded_at = Postgres now())
      A3             transaction start -> the publish of ScoreFace, seen by a core-NATS subscriber in
                     this process (insert, commit, the relay woken, its outbox read and publish)
      A4             that publish -> ScoreFace received by the pull consumer (JetStream store + delivery)
    facecheck sim    ScoreFace received -> FaceScored published
    planner B        FaceScored published -> RenderStep of the next step received
      B1..B4         split as A, at StepScored's occurred_at / recorded_at and RenderStep's publish
  chain start        RequestChain published -> RenderStep of step 0 received (planning included)
    S1..S4           split as A, at ChainRequested's occurred_at (taken when the planner's handler
                     starts, before planning) / recorded_at and RenderStep 0's publish; shown apart
                     for the first inflight requests (sent at once) and the later ones (one per ending)

Targets: duty cycle >= 97 %, transition p99 <= 5 ms. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._backends import backends, machine, pg_settings
from contracts import (
    REGISTRY,
    Envelope,
    FaceScored,
    ImageRef,
    Message,
    RenderCompleted,
    RequestChain,
)
from contracts.subjects import COMMANDS_STREAM, command_subject, event_subject
from services.runtime.blobs import BlobStore
from services.launcher.embedded import free_port
from services.runtime.ids import derived_id
from services.runtime.settings import to_asyncpg_dsn
from services.runtime.streams import ensure_streams

REQUEST_TEXT = "on a beach at sunset, in a red summer dress, sitting on a towel"
STEPS_PER_CHAIN = 3
TARGET_DUTY = 0.97
TARGET_P99_MS = 5.0
BASELINE_N = 500
BASELINE_WARMUP = 50
BASELINE_PAUSE_S = 0.002
PULL_BATCH = 1000
PULL_EXPIRES_S = 2.0
ENDINGS = ("completed", "failed", "refused", "cancelled")

_OFFSET = time.time() - time.perf_counter()


def clock() -> float:
    """Wall-clock seconds with perf_counter's resolution and monotonicity."""
    return time.perf_counter() + _OFFSET


# --- receiving ----------------------------------------------------------------------------------


class PullConsumer:
    """A durable pull consumer fed by our own overlapping pull requests: every message reaches the
    callback as soon as it arrives, with no fetch() round trip or batch to wait for in between."""

    def __init__(self, nc: nats.NATS, stream: str, durable: str, on_msg: Callable[[Msg, float], None]) -> None:
        self._nc = nc
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._on_msg = on_msg
        self._inbox = nc.new_inbox()
        self._delivered = 0
        self._low = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._sub = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._arrived)
        self._task = asyncio.create_task(self._keep_pulling())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with suppress(Exception):
                await self._sub.unsubscribe()

    async def _keep_pulling(self) -> None:
        request = json.dumps({"batch": PULL_BATCH, "expires": int(PULL_EXPIRES_S * 1e9)}).encode()
        while True:
            self._delivered = 0
            self._low.clear()
            await self._nc.publish(self._next, request, reply=self._inbox)
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._low.wait(), PULL_EXPIRES_S / 2)

    async def _arrived(self, msg: Msg) -> None:
        t = clock()
        if not msg.data and msg.headers and "Status" in msg.headers:
            return  # 408 request expired / 404 / 409: the next request is already on its way
        self._delivered += 1
        if self._delivered >= PULL_BATCH // 2:
            self._low.set()
        self._on_msg(msg, t)


async def ensure_durable(js, durable: str, subject: str) -> None:
    config = ConsumerConfig(durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT,
                            deliver_policy=DeliverPolicy.ALL, ack_wait=120, max_deliver=-1, max_ack_pending=20_000)
    await js.add_consumer(COMMANDS_STREAM, config=config)


# --- one configuration -------------------------------------------------------------------------


@dataclass
class Config:
    backends: int
    render_s: float
    chains: int
    inflight: int
    free: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    busy: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    submitted: dict[str, float] = field(default_factory=dict)
    render_recv: dict[tuple[str, int], float] = field(default_factory=dict)
    render_pub: dict[tuple[str, int], float] = field(default_factory=dict)
    score_recv: dict[tuple[str, int], float] = field(default_factory=dict)
    face_pub: dict[tuple[str, int], float] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)
    last_submit: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    load_after: str = ""
    planner_cpu_s: float = 0.0
    # (chain, type, step) -> the planner's occurred_at / Postgres' transaction start of that event
    decided: dict[tuple[str, str, int], float] = field(default_factory=dict)
    txn_start: dict[tuple[str, str, int], float] = field(default_factory=dict)
    # (chain, command type, step) -> when a core-NATS subscriber saw the planner publish it
    on_wire: dict[tuple[str, str, int], float] = field(default_factory=dict)
    slots: asyncio.Semaphore | None = None
    all_ended: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(self.backends):
            self.free.put_nowait(i)
            self.busy[i] = []
        self.slots = asyncio.Semaphore(self.inflight)


@dataclass
class Job:
    """A command for a chain of the running configuration, received by a simulated service."""

    msg: Msg
    cfg: Config
    incoming: Envelope
    command: Any
    key: tuple[str, int]

    async def answer(self, js, result: Message, id_suffix: str, published: dict[tuple[str, int], float],
                     what: str) -> None:
        """Publish `result` as the real service does (event id derived from the command's, stream chain-<id>,
        correlation id copied), noting when in `published`; then ack the command."""
        incoming = self.incoming
        envelope = Envelope.wrap(result, event_id=derived_id(incoming.event_id, id_suffix),
                                 stream=f"chain-{self.command.chain_id}", occurred_at=datetime.now(UTC),
                                 correlation_id=incoming.correlation_id, causation_id=str(incoming.event_id),
                                 actor=incoming.actor, trace=incoming.trace)
        subject, payload = event_subject(envelope.type, envelope.stream), envelope.to_bytes()
        published[self.key] = clock()
        try:
            await js.publish(subject, payload, headers={"Nats-Msg-Id": str(envelope.event_id)})
        except Exception as exc:  # noqa: BLE001 - report, do not kill the run
            self.cfg.errors.append(f"{what} publish: {exc!r}")
            return
        await self.msg.ack()


class Simulators:
    """The simulated renderer and facecheck, and the chain-ending listener; bound to one Config at a time."""

    def __init__(self, render_nc: nats.NATS, face_nc: nats.NATS, output: ImageRef) -> None:
        self.render_js = render_nc.jetstream(timeout=10)
        self.face_js = face_nc.jetstream(timeout=10)
        self.output = output
        self.current: Config | None = None
        self.strays = 0
        self._tasks: set[asyncio.Task] = set()

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # renderer
    def on_render(self, msg: Msg, t: float) -> None:
        self._spawn(self._render(msg, t))

    async def _render(self, msg: Msg, t_recv: float) -> None:
        job = await self._claim(msg)
        if job is None:
            return
        cfg, command = job.cfg, job.command
        cfg.render_recv[job.key] = t_recv
        backend = await cfg.free.get()
        start = clock()
        await asyncio.sleep(cfg.render_s)
        end = clock()
        cfg.free.put_nowait(backend)
        cfg.busy[backend].append((start, end))
        done = RenderCompleted(chain_id=command.chain_id, step=command.step, attempt=command.attempt, image=self.output,
                               workflow_hash="bench-simulated", backend=f"sim-{backend}", engine="bench",
                               timings={"execute": (end - start) * 1000})
        await job.answer(self.render_js, done, "render-result", cfg.render_pub, "render")

    # facecheck
    def on_score(self, msg: Msg, t: float) -> None:
        self._spawn(self._score(msg, t))

    async def _score(self, msg: Msg, t_recv: float) -> None:
        job = await self._claim(msg)
        if job is None:
            return
        command = job.command
        job.cfg.score_recv[job.key] = t_recv
        result = FaceScored(chain_id=command.chain_id, step=command.step, attempt=command.attempt, score=90.0,
                            faces_found=1, encoder="bench")
        await job.answer(self.face_js, result, "face-result", job.cfg.face_pub, "face")

    async def _claim(self, msg: Msg) -> Job | None:
        """The command, if it belongs to a chain of the running configuration; else acked and counted as a stray."""
        cfg = self.current
        incoming = Envelope.from_bytes(msg.data)
        command = incoming.open(REGISTRY)
        key = (str(command.chain_id), command.step)
        if cfg is None or key[0] not in cfg.submitted:
            self.strays += 1
            await msg.ack()
            return None
        return Job(msg, cfg, incoming, command, key)

    # a core-NATS tap on the command subjects: when the planner published each command
    async def on_command_wire(self, msg: Msg) -> None:
        t = clock()
        cfg = self.current
        if cfg is None:
            return
        data = json.loads(msg.data)
        body = data["data"]
        cfg.on_wire.setdefault((body["chain_id"], data["type"], body.get("step", 0)), t)

    # user
    async def on_ending(self, msg: Msg) -> None:
        cfg = self.current
        kind = msg.subject.split(".")[3]
        chain = msg.subject.rsplit(".", 1)[1].removeprefix("chain-")
        if cfg is None or chain not in cfg.submitted or chain in cfg.ended:
            return
        cfg.ended[chain] = kind
        assert cfg.slots is not None
        cfg.slots.release()
        if len(cfg.ended) == cfg.chains:
            cfg.finished = clock()
            cfg.all_ended.set()


async def run_config(cfg: Config, sims: Simulators, user_js, reference: ImageRef, timeout_s: float) -> None:
    sims.current = cfg
    cfg.started = clock()
    assert cfg.slots is not None
    for _ in range(cfg.chains):
        await cfg.slots.acquire()
        chain_id = uuid.uuid4()
        stream = f"chain-{chain_id}"
        command = RequestChain(chain_id=chain_id, character_id="bench", user_id="bench", request_text=REQUEST_TEXT,
                               reference_image=reference)
        envelope = Envelope.wrap(command, event_id=uuid.uuid4(), stream=stream, occurred_at=datetime.now(UTC),
                                 correlation_id=stream, actor="bench")
        payload = envelope.to_bytes()
        cfg.submitted[str(chain_id)] = clock()
        await user_js.publish(command_subject(command.type), payload, headers={"Nats-Msg-Id": str(envelope.event_id)})
    cfg.last_submit = clock()
    with suppress(asyncio.TimeoutError):
        await asyncio.wait_for(cfg.all_ended.wait(), timeout_s)
    if not cfg.finished:
        cfg.finished = clock()
    cfg.load_after = machine().split("loadavg(1/5/15m)=")[1]
    await asyncio.sleep(0.3)  # let the last acks and appends settle before the next configuration
    sims.current = None


async def load_decisions(database_url: str, cfg: Config) -> None:
    """occurred_at of StepRendered / StepScored per (chain, step): when the planner decided (its own clock)."""
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, type, coalesce((data->>'step')::int, 0) AS step, metadata->>'occurred_at' AS at, "
            "recorded_at FROM events WHERE stream_id = ANY($1::text[]) "
            "AND type IN ('chain.requested', 'chain.step_rendered', 'chain.step_scored')",
            [f"chain-{c}" for c in cfg.submitted],
        )
    finally:
        await conn.close()
    for row in rows:
        at = datetime.fromisoformat(row["at"]).timestamp()
        key = (row["stream_id"].removeprefix("chain-"), row["type"], row["step"])
        cfg.decided[key] = at
        cfg.txn_start[key] = row["recorded_at"].timestamp()


# --- figures -----------------------------------------------------------------------------------


def pct(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def row(name: str, values_ms: list[float], target: bool = False) -> str:
    v = sorted(values_ms)
    if not v:
        return f"{name:<62}{0:>6}  (no samples)"
    p99 = pct(v, 99)
    text = f"{name:<62}{len(v):>6}{pct(v, 50):>8.2f}{p99:>8.2f}{v[-1]:>8.2f}{statistics.fmean(v):>8.2f}"
    if target:
        text += f"   {'PASS' if p99 <= TARGET_P99_MS else 'MISS'} (p99 <= {TARGET_P99_MS:g} ms)"
    return text


def print_half(k: str, half: str, t: dict[str, list[float]], start: str, event: str, command: str) -> None:
    """One planner half of a transition and its four parts (see the module docstring)."""
    print(row(f"{k}   planner {half}: {start} -> {command} recv", t[half]))
    print(row(f"{k}     {half}1: -> planner decided ({event} occurred_at)", t[f"{half}1"]))
    print(row(f"{k}     {half}2: decided -> append's transaction start", t[f"{half}2"]))
    print(row(f"{k}     {half}3: txn start -> {command} published", t[f"{half}3"]))
    print(row(f"{k}     {half}4: published -> {command} recv (JS hop)", t[f"{half}4"]))


def print_start(k: str, t: dict[str, list[float]]) -> None:
    """The chain start and its four parts (see the module docstring)."""
    print(row(f"{k} chain start: RequestChain pub -> RenderStep 0 recv", t["start"]))
    print(row(f"{k}   of the first burst ({len(t['start_burst'])} requests sent at once)", t["start_burst"]))
    print(row(f"{k}   of the later ones (each sent when a chain ends)", t["start_steady"]))
    print(row(f"{k}     S1: -> planner took it (ChainRequested occurred_at)", t["S1"]))
    print(row(f"{k}     S2: took it -> append's transaction start (planning)", t["S2"]))
    print(row(f"{k}     S3: txn start -> RenderStep 0 published", t["S3"]))
    print(row(f"{k}     S4: published -> RenderStep 0 recv (JS hop)", t["S4"]))


def duty(cfg: Config) -> tuple[float, float, float, float]:
    """(mean duty over the run, min over backends, mean duty in the steady window, wall seconds)."""
    intervals = [iv for ivs in cfg.busy.values() for iv in ivs]
    if not intervals:
        return 0.0, 0.0, 0.0, 0.0
    first = min(s for s, _ in intervals)
    last = max(e for _, e in intervals)
    wall = last - first
    per = [sum(e - s for s, e in ivs) / wall for ivs in cfg.busy.values()]
    steady_end = min(cfg.last_submit, last)
    steady_wall = steady_end - first
    steady = [sum(max(0.0, min(e, steady_end) - s) for s, e in ivs) / steady_wall if steady_wall > 0 else 0.0
              for ivs in cfg.busy.values()]
    return statistics.fmean(per), min(per), statistics.fmean(steady), wall


def transitions(cfg: Config) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("total", "A", "A1", "A2", "A3", "A4", "F", "B", "B1", "B2", "B3",
                                                   "B4", "start", "S1", "S2", "S3", "S4", "start_burst", "start_steady")}
    for i, (chain, t_sub) in enumerate(cfg.submitted.items()):
        if (chain, 0) in cfg.render_recv:
            first = cfg.render_recv[(chain, 0)]
            out["start"].append((first - t_sub) * 1000)
            # The first `inflight` requests go out at once; the later ones each when a chain ends.
            out["start_burst" if i < cfg.inflight else "start_steady"].append((first - t_sub) * 1000)
            decided = cfg.decided.get((chain, "chain.requested", 0))
            txn = cfg.txn_start.get((chain, "chain.requested", 0))
            wire = cfg.on_wire.get((chain, "render.step", 0))
            if None not in (decided, txn, wire):
                for part, (a, b) in zip(("S1", "S2", "S3", "S4"),
                                        ((t_sub, decided), (decided, txn), (txn, wire), (wire, first)), strict=True):
                    out[part].append((b - a) * 1000)
        for k in range(STEPS_PER_CHAIN - 1):
            pub, nxt = cfg.render_pub.get((chain, k)), cfg.render_recv.get((chain, k + 1))
            srecv, fpub = cfg.score_recv.get((chain, k)), cfg.face_pub.get((chain, k))
            if None in (pub, nxt, srecv, fpub):
                continue
            out["total"].append((nxt - pub) * 1000)
            out["F"].append((fpub - srecv) * 1000)
            for half, event, start, command, step, end in (("A", "chain.step_rendered", pub, "face.score", k, srecv),
                                                          ("B", "chain.step_scored", fpub, "render.step", k + 1, nxt)):
                out[half].append((end - start) * 1000)
                decided = cfg.decided.get((chain, event, k))
                txn = cfg.txn_start.get((chain, event, k))
                wire = cfg.on_wire.get((chain, command, step))
                if None in (decided, txn, wire):
                    continue
                out[f"{half}1"].append((decided - start) * 1000)
                out[f"{half}2"].append((txn - decided) * 1000)
                out[f"{half}3"].append((wire - txn) * 1000)
                out[f"{half}4"].append((end - wire) * 1000)
    return out


# --- baseline ------------------------------------------------------------------------------------


async def baseline(pub_nc: nats.NATS, sub_nc: nats.NATS, reference: ImageRef) -> list[float]:
    """One command at a time: JetStream publish -> the same kind of receiver, on a subject of its own."""
    js = pub_nc.jetstream(timeout=10)
    subject = command_subject("bench.ping")
    await ensure_durable(js, "bench-ping", subject)
    waiting: dict[str, asyncio.Future[float]] = {}

    def arrived(msg: Msg, t: float) -> None:
        future = waiting.pop((msg.headers or {}).get("Nats-Msg-Id", ""), None)
        if future is not None and not future.done():
            future.set_result(t)
        asyncio.ensure_future(msg.ack())

    consumer = PullConsumer(sub_nc, COMMANDS_STREAM, "bench-ping", arrived)
    await consumer.start()
    await asyncio.sleep(0.05)
    chain_id = uuid.uuid4()
    body = RequestChain(chain_id=chain_id, character_id="bench", user_id="bench", request_text=REQUEST_TEXT,
                        reference_image=reference)
    latencies: list[float] = []
    try:
        for i in range(BASELINE_WARMUP + BASELINE_N):
            env = Envelope.wrap(body, event_id=uuid.uuid4(), stream=f"chain-{chain_id}",
                                occurred_at=datetime.now(UTC), correlation_id="bench", actor="bench")
            future = asyncio.get_running_loop().create_future()
            waiting[str(env.event_id)] = future
            payload = env.to_bytes()
            t0 = clock()
            await js.publish(subject, payload, headers={"Nats-Msg-Id": str(env.event_id)})
            with suppress(asyncio.TimeoutError):
                t1 = await asyncio.wait_for(future, 2.0)
                if i >= BASELINE_WARMUP:
                    latencies.append((t1 - t0) * 1000)
            await asyncio.sleep(BASELINE_PAUSE_S)
    finally:
        await consumer.stop()
        with suppress(Exception):
            await js.delete_consumer(COMMANDS_STREAM, "bench-ping")
    return latencies


# --- the planner process ---------------------------------------------------------------------------


def start_planner(nats_url: str, database_url: str, log_path: Path, workers: int | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIKENESS_")}
    env.update(LIKENESS_NATS_URL=nats_url, LIKENESS_DATABASE_URL=database_url, LIKENESS_HTTP_PORT=str(port),
               LIKENESS_SERVICE_NAME="planner", PYTHONPATH=str(ROOT))
    if workers is not None:
        env["LIKENESS_WORKERS"] = str(workers)
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "services.planner"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    return proc, port


def wait_ready(proc: subprocess.Popen, port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the planner exited with {proc.returncode} before it was ready")
        with suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the planner was not ready within {timeout_s:.0f}s")


def stop_planner(proc: subprocess.Popen) -> str:
    if proc.poll() is not None:
        return f"had already exited with {proc.returncode}"
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait(10)
        return f"did not stop within 30 s of SIGTERM: killed (rc {rc})"
    return f"stopped on SIGTERM in {time.perf_counter() - started:.1f}s (rc {rc})"


def report_log(log_path: Path) -> None:
    """The planner's warnings, errors and tracebacks (the log itself goes with the temp dir)."""
    lines = log_path.read_text(errors="replace").splitlines()
    shown: list[str] = []
    for i, line in enumerate(lines):
        if " WARNING " in line or " ERROR " in line or " CRITICAL " in line:
            shown.append(line)
        elif line.startswith("Traceback"):
            block = [line]
            for more in lines[i + 1:]:
                block.append(more)
                if not more.startswith((" ", "\t")):
                    break
            shown.extend(block)
    if shown:
        print(f"planner log ({len(lines)} lines), warnings, errors and tracebacks:")
        for line in shown[:40]:
            print(f"  | {line[:240]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 where /proc cannot say)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def tiny_png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, format="PNG")
    return out.getvalue()


# --- the simulated world around the planner -------------------------------------------------------


@dataclass
class World:
    """This process's side of a run: the simulators, the user's JetStream, the reference image, the baseline."""

    sims: Simulators
    user_js: Any
    reference: ImageRef
    baseline_ms: list[float]


@asynccontextmanager
async def simulated_world(nats_url: str) -> AsyncIterator[World]:
    """Streams, blobs, the baseline hop, then the simulated renderer/facecheck consumers and the taps;
    all torn down on exit."""
    render_nc = await nats.connect(nats_url, connect_timeout=5, name="bench-renderer")
    face_nc = await nats.connect(nats_url, connect_timeout=5, name="bench-facecheck")
    user_nc = await nats.connect(nats_url, connect_timeout=5, name="bench-user")
    user_js = user_nc.jetstream(timeout=10)
    await ensure_streams(user_js)
    blobs = await BlobStore.open(user_js)
    reference = await blobs.put_image(tiny_png((200, 150, 120)))
    output = await blobs.put_image(tiny_png((30, 120, 200)))

    baseline_ms = await baseline(user_nc, render_nc, reference)

    await ensure_durable(user_js, "bench-renderer", command_subject("render.step"))
    await ensure_durable(user_js, "bench-facecheck", command_subject("face.score"))
    sims = Simulators(render_nc, face_nc, output)
    consumers = [PullConsumer(render_nc, COMMANDS_STREAM, "bench-renderer", sims.on_render),
                 PullConsumer(face_nc, COMMANDS_STREAM, "bench-facecheck", sims.on_score)]
    for consumer in consumers:
        await consumer.start()
    for ending in ENDINGS:
        await user_nc.subscribe(f"likeness.evt.chain.{ending}.*", cb=sims.on_ending)
    for command in ("face.score", "render.step", "chain.request"):
        await user_nc.subscribe(command_subject(command), cb=sims.on_command_wire)
    await user_nc.flush()
    try:
        yield World(sims, user_js, reference, baseline_ms)
    finally:
        for consumer in consumers:
            await consumer.stop()
        for durable in ("bench-renderer", "bench-facecheck"):
            with suppress(Exception):
                await user_js.delete_consumer(COMMANDS_STREAM, durable)
        for nc in (render_nc, face_nc, user_nc):
            with suppress(Exception):
                await nc.drain()


def config_for(k: int, render_s: float, seconds: float, inflight_per_backend: int) -> tuple[Config, float]:
    """A configuration of K backends with ~`seconds` of rendering, and the time it may take at most."""
    renders = max(1, round(seconds * k / render_s))
    cfg = Config(backends=k, render_s=render_s, chains=max(1, renders // STEPS_PER_CHAIN),
                 inflight=inflight_per_backend * k)
    expected = cfg.chains * STEPS_PER_CHAIN * render_s / k
    return cfg, 3 * expected + 30


# --- main ----------------------------------------------------------------------------------------


async def main(args: argparse.Namespace, nats_url: str, database_url: str, state: Path) -> None:
    if args.async_commit:
        # A what-if, not how the product runs: commits stop waiting for the WAL flush (fdatasync).
        conn = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=10)
        try:
            await conn.execute(f'ALTER DATABASE "{database_url.rsplit("/", 1)[1]}" SET synchronous_commit = off')
        finally:
            await conn.close()
        print("WHAT-IF: synchronous_commit = off for this database (commits do not wait for the WAL flush)")
    print(await pg_settings(database_url))
    async with simulated_world(nats_url) as world:
        await drive(args, world, nats_url, database_url, state)


async def drive(args: argparse.Namespace, world: World, nats_url: str, database_url: str, state: Path) -> None:
    sims, user_js, reference, baseline_ms = world.sims, world.user_js, world.reference, world.baseline_ms
    log_path = args.planner_log or state / "planner.log"
    t = time.perf_counter()
    proc, port = start_planner(nats_url, database_url, log_path, args.planner_workers)
    configs: list[Config] = []
    try:
        wait_ready(proc, port)
        workers = args.planner_workers or "default (8)"
        print(f"planner: pid {proc.pid}, ready in {time.perf_counter() - t:.1f}s on :{port}, workers {workers}")
        print(f"render time T = {args.render_s * 1000:.0f} ms; {STEPS_PER_CHAIN} steps a chain; "
              f"{args.inflight_per_backend} x K chains in flight; ~{args.seconds:g} s of rendering per configuration")
        for k in args.backends:
            cfg, timeout_s = config_for(k, args.render_s, args.seconds, args.inflight_per_backend)
            cpu = cpu_seconds(proc.pid)
            await run_config(cfg, sims, user_js, reference, timeout_s=timeout_s)
            cfg.planner_cpu_s = cpu_seconds(proc.pid) - cpu
            await load_decisions(database_url, cfg)
            configs.append(cfg)
            ended = list(cfg.ended.values())
            print(f"  K={k}: {cfg.chains} chains submitted, {ended.count('completed')} completed, "
                  f"{len(ended) - ended.count('completed')} ended otherwise, in {cfg.finished - cfg.started:.1f}s; "
                  f"loadavg {cfg.load_after}")
            if proc.poll() is not None:
                print(f"  the planner exited with {proc.returncode}; stopping")
                break
    finally:
        print(f"planner {stop_planner(proc)}")
        report_log(log_path)

    print()
    print("chains and backend duty cycle (busy / wall from first render start to last render end)")
    print(f"{'K':>3}{'chains':>8}{'completed':>11}{'renders':>9}{'wall s':>8}{'planner CPU':>13}{'duty':>8}{'min':>8}"
          f"{'steady':>8}   target (duty >= {TARGET_DUTY:.0%})")
    for cfg in configs:
        mean, low, steady, wall = duty(cfg)
        done = list(cfg.ended.values()).count("completed")
        renders = sum(len(v) for v in cfg.busy.values())
        verdict = "PASS" if mean >= TARGET_DUTY else "MISS"
        verdict_steady = "PASS" if steady >= TARGET_DUTY else "MISS"
        cpu = f"{cfg.planner_cpu_s * 1000 / max(1, renders):.1f} ms/step"
        print(f"{cfg.backends:>3}{cfg.chains:>8}{f'{done}/{cfg.chains}':>11}{renders:>9}{wall:>8.1f}{cpu:>13}"
              f"{mean:>8.1%}{low:>8.1%}{steady:>8.1%}   {verdict} (run), {verdict_steady} (steady)")
        if cfg.errors:
            print(f"      {len(cfg.errors)} errors, first: {cfg.errors[0]}")
    print("  duty: mean over backends; min: the least busy backend; steady: window ends at the last submission;")
    print("  planner CPU: the planner process's user+system CPU over the configuration, per rendered step")

    print()
    print("orchestration overhead per step transition (ms)")
    print(f"{'path':<62}{'n':>6}{'p50':>8}{'p99':>8}{'max':>8}{'mean':>8}")
    print(row("baseline: JetStream publish -> pull receive (1 hop, idle)", baseline_ms))
    for cfg in configs:
        t = transitions(cfg)
        k = f"K={cfg.backends}"
        print(row(f"{k} transition: RenderCompleted pub -> next RenderStep recv", t["total"], target=True))
        print_half(k, "A", t, "RenderCompleted pub", "StepRendered", "ScoreFace")
        print(row(f"{k}   facecheck sim: ScoreFace recv -> FaceScored pub", t["F"]))
        print_half(k, "B", t, "FaceScored pub", "StepScored", "RenderStep")
        print_start(k, t)
    if sims.strays:
        print(f"({sims.strays} commands arrived for chains of no running configuration)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--render-s", type=float, default=0.2, help="simulated render time T (s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="rendering time per configuration (s)")
    parser.add_argument("--backends", type=int, nargs="+", default=[1, 2, 4], help="backend counts K to run")
    parser.add_argument("--inflight-per-backend", type=int, default=4, help="chains in flight per backend")
    parser.add_argument("--planner-workers", type=int, default=None, help="LIKENESS_WORKERS for the planner")
    parser.add_argument("--planner-log", type=Path, default=None, help="keep the planner's log in this file")
    parser.add_argument("--async-commit", action="store_true",
                        help="what-if: run with synchronous_commit=off, to see what the WAL flush costs")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    begun = time.perf_counter()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="likeness-bench-chain-") as tmp, backends() as (nats_url, database_url):
        asyncio.run(main(arguments, nats_url, database_url, Path(tmp)))
    print(f"\ntotal {time.perf_counter() - begun:.1f}s; machine at the end: {machine()}")
