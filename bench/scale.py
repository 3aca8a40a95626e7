"""Chains/s and backend duty cycle with 1, 2, 4, 8 simulated backends behind 1 and 2 planner processes, the
step transition overhead and the chain start next to a raw JetStream hop measured in the same run.

    PYTHONPATH=. .venv/bin/python bench/scale.py [--seconds 12] [--backends 1 2 4 8] [--planners 1 2]
                                                 [--render-s 0.2] [--inflight-per-backend 4]

The machinery is bench/chain.py's (read its docstring): the REAL planner as `python -m services.planner`
processes (rule-based plans), the simulated renderer (K backends, each render holds one for --render-s),
the simulated facecheck and the user in this process. For each planner count P the planners are started
(they share the durable consumers: JetStream splits the work between them; the outbox relay's leader lock
sits in one of them), then each K runs with 4 x K chains in flight and ~--seconds of rendering.

Figures:
  chains/s      completed chains / (last ending - first submission); ideal = K / (3 T) (three renders a
                chain, no orchestration time); "x1" = chains/s relative to K=1 at the same P (ideal: K)
  duty          busy / wall of the backends (chain.py's mean over backends over the run)
  transition    RenderCompleted published -> next RenderStep received (p50/p99, ms)
  start         RequestChain published -> RenderStep 0 received (p50/p99, ms), planning included;
                "steady start" leaves out the first 4 x K requests, which are all sent at once
  hop           the baseline: one JetStream publish -> pull receive, idle (p50/p99, ms)
Targets: transition p99 <= 5 ms, chain start p99 <= 50 ms. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._backends import backends, machine, pg_settings
from bench.chain import (
    STEPS_PER_CHAIN,
    Config,
    World,
    config_for,
    cpu_seconds,
    duty,
    load_decisions,
    pct,
    print_half,
    print_start,
    report_log,
    row,
    run_config,
    simulated_world,
    start_planner,
    stop_planner,
    transitions,
    wait_ready,
)

TARGET_TRANSITION_P99_MS = 5.0
TARGET_START_P99_MS = 50.0


def p50_p99(values: list[float]) -> str:
    v = sorted(values)
    return f"{pct(v, 50):>7.1f}{pct(v, 99):>7.1f}" if v else f"{'-':>7}{'-':>7}"


def chains_per_s(cfg: Config) -> float:
    done = list(cfg.ended.values()).count("completed")
    return done / (cfg.finished - cfg.started) if cfg.finished > cfg.started else 0.0


async def run_planners(args: argparse.Namespace, world: World, nats_url: str, database_url: str, state: Path,
                       planners: int) -> list[Config]:
    """Start `planners` planner processes, run every K against them, stop them."""
    started = time.perf_counter()
    procs = [start_planner(nats_url, database_url, state / f"planner-{planners}-{i}.log", args.planner_workers)
             for i in range(planners)]
    configs: list[Config] = []
    try:
        for proc, port in procs:
            wait_ready(proc, port)
        print(f"P={planners}: planner pids {[p.pid for p, _ in procs]} ready in {time.perf_counter() - started:.1f}s")
        for k in args.backends:
            cfg, timeout_s = config_for(k, args.render_s, args.seconds, args.inflight_per_backend)
            cpu = sum(cpu_seconds(p.pid) for p, _ in procs)
            await run_config(cfg, world.sims, world.user_js, world.reference, timeout_s=timeout_s)
            cfg.planner_cpu_s = sum(cpu_seconds(p.pid) for p, _ in procs) - cpu
            await load_decisions(database_url, cfg)
            configs.append(cfg)
            ended = list(cfg.ended.values())
            print(f"  P={planners} K={k}: {ended.count('completed')}/{cfg.chains} chains completed in "
                  f"{cfg.finished - cfg.started:.1f}s; loadavg {cfg.load_after}")
            if any(p.poll() is not None for p, _ in procs):
                print("  a planner exited; stopping")
                break
    finally:
        for i, (proc, _) in enumerate(procs):
            print(f"  planner {i} {stop_planner(proc)}")
            report_log(state / f"planner-{planners}-{i}.log")
    return configs


def report(args: argparse.Namespace, runs: dict[int, list[Config]], baseline_ms: list[float]) -> None:
    print()
    print(f"render time T = {args.render_s * 1000:.0f} ms, {STEPS_PER_CHAIN} renders a chain, "
          f"{args.inflight_per_backend} x K chains in flight; ms columns are p50 p99")
    print(f"{'P':>2}{'K':>3}{'chains':>8}{'chains/s':>10}{'ideal':>7}{'x1':>6}{'eff':>6}{'duty':>7}"
          f"{'CPU/step':>10}{'transition':>14}{'start':>14}{'steady start':>14}{'hop':>14}")
    hop = p50_p99(baseline_ms)
    for planners, configs in runs.items():
        base = next((chains_per_s(c) for c in configs if c.backends == 1), None)
        for cfg in configs:
            rate = chains_per_s(cfg)
            ideal = cfg.backends / (STEPS_PER_CHAIN * args.render_s)
            ratio = f"{rate / base:>6.2f}" if base else f"{'-':>6}"
            mean, _, _, _ = duty(cfg)
            renders = sum(len(v) for v in cfg.busy.values())
            t = transitions(cfg)
            print(f"{planners:>2}{cfg.backends:>3}{len(cfg.ended):>8}{rate:>10.2f}{ideal:>7.2f}{ratio}"
                  f"{rate / ideal:>6.0%}{mean:>7.1%}{cfg.planner_cpu_s * 1000 / max(1, renders):>8.1f}ms"
                  f"{p50_p99(t['total'])}{p50_p99(t['start'])}{p50_p99(t['start_steady'])}{hop}")
    print("  x1: chains/s over K=1's at the same P (ideal = K); eff: chains/s over the ideal K/(3T);")
    print("  CPU/step: all planner processes' CPU per rendered step; steady start: without the first burst")
    print(f"  targets: transition p99 <= {TARGET_TRANSITION_P99_MS:g} ms, start p99 <= {TARGET_START_P99_MS:g} ms")
    if args.split:
        print()
        print("split of the transition and the start (ms; see bench/chain.py)")
        print(f"{'path':<62}{'n':>6}{'p50':>8}{'p99':>8}{'max':>8}{'mean':>8}")
        print(row("baseline: JetStream publish -> pull receive (1 hop, idle)", baseline_ms))
        for planners, configs in runs.items():
            for cfg in configs:
                t, k = transitions(cfg), f"P={planners} K={cfg.backends}"
                print(row(f"{k} transition", t["total"], target=True))
                print_half(k, "A", t, "RenderCompleted pub", "StepRendered", "ScoreFace")
                print_half(k, "B", t, "FaceScored pub", "StepScored", "RenderStep")
                print_start(k, t)


async def main(args: argparse.Namespace, nats_url: str, database_url: str, state: Path) -> None:
    print(await pg_settings(database_url))
    runs: dict[int, list[Config]] = {}
    async with simulated_world(nats_url) as world:
        hop = sorted(world.baseline_ms)
        print(f"baseline JetStream hop: p50 {pct(hop, 50):.2f} ms, p99 {pct(hop, 99):.2f} ms "
              f"(mean {statistics.fmean(hop):.2f})")
        for planners in args.planners:
            runs[planners] = await run_planners(args, world, nats_url, database_url, state, planners)
    report(args, runs, world.baseline_ms)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="rendering time per configuration (s)")
    parser.add_argument("--backends", type=int, nargs="+", default=[1, 2, 4, 8], help="backend counts K")
    parser.add_argument("--planners", type=int, nargs="+", default=[1, 2], help="planner process counts P")
    parser.add_argument("--render-s", type=float, default=0.2, help="simulated render time T (s)")
    parser.add_argument("--inflight-per-backend", type=int, default=4, help="chains in flight per backend")
    parser.add_argument("--planner-workers", type=int, default=None, help="LIKENESS_WORKERS for the planners")
    parser.add_argument("--split", action="store_true", help="also print the A1..B4 / S1..S4 split per row")
    args = parser.parse_args()
    if min(args.backends) < 1 or min(args.planners) < 1 or args.seconds <= 0 or args.render_s <= 0:
        parser.error("--backends and --planners must be >= 1, --seconds and --render-s > 0")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    begun = time.perf_counter()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="likeness-bench-scale-") as tmp, backends() as (nats_url, database_url):
        asyncio.run(main(arguments, nats_url, database_url, Path(tmp)))
    print(f"\ntotal {time.perf_counter() - begun:.1f}s; machine at the end: {machine()}")
