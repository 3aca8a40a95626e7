"""Fair scheduling with model affinity vs today's least-loaded FIFO, on simulated backends in simulated time.

    PYTHONPATH=. .venv/bin/python bench/scheduling.py [--backends 2 3 4] [--render-s 8] [--swap-s 6] [--seed 16]

The load (issue 16): a heavy user submits 50 chains at t=0, then five light users one chain each at t=1..5 s.
Every chain has 3 steps on one model (3 models, drawn at random per chain); a step's next one is submitted
0.5 s after it renders (the face check). A render takes --render-s (+-25 %, drawn per step), plus --swap-s
when the backend must load another model than the one it last ran. The event simulation is exact and
deterministic (no sleeps, no noise): the figures are the same on every machine.

Policies, on the same jobs in the same run:
  least-loaded  today: the consumer takes jobs in arrival order, `workers` (4) at a time, and each goes to
                `backend_policy.preference`'s first backend (least loaded), queueing FIFO in that ComfyUI
  fair          `fair_share.plan` as the renderer's Scheduler calls it (64 jobs held, 1 slot per backend),
                affinity off (affinity_skips 0)
  fair+affinity the same with the default affinity_skips 2

Figures: wait = step submitted -> its render starts (s), p50/p95 per user class; light done = a light user's
chain submitted -> its last step rendered (p95, s); makespan = last render's end (s); idle % = share of
backend time up to the makespan spent neither rendering nor loading a model (the tail, the face-check gaps);
idle+work % = the share of it spent idle while some submitted job waited to start (never-idle: 0);
swaps = renders that loaded another model than the backend's last (first loads not counted).
"ratio" = fair+affinity / least-loaded (nan where today's figure is 0).
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.renderer import fair_share  # noqa: E402
from services.renderer.backend_policy import BackendView, preference  # noqa: E402

MODELS = ("qwen-image-edit", "flux-kontext-dev", "sdxl")
STEPS = 3
FACE_CHECK_S = 0.5
WORKERS = 4
HOLD = 64


@dataclass
class Step:
    user: str
    chain: int
    index: int
    model: str
    render_s: float
    submitted: float = 0.0
    started: float = 0.0
    ended: float = 0.0


@dataclass
class Box:
    url: str
    loaded: str | None = None
    running: Step | None = None
    queue: deque = field(default_factory=deque)  # today's: prompts queued inside ComfyUI
    last_used: float = 0.0
    busy_s: float = 0.0


def workload(seed: int, render_s: float) -> list[tuple[float, str, str, list[float]]]:
    """(submitted at, user, model, render seconds per step) per chain."""
    rng = random.Random(seed)
    chains = [(0.0, "heavy", rng.choice(MODELS)) for _ in range(50)]
    chains += [(1.0 + n, f"light{n}", rng.choice(MODELS)) for n in range(5)]
    return [(at, user, model, [render_s * rng.uniform(0.75, 1.25) for _ in range(STEPS)]) for at, user, model in chains]


class Sim:
    def __init__(self, n_backends: int, swap_s: float, policy: str) -> None:
        self.boxes = [Box(f"http://gpu{i}") for i in range(n_backends)]
        self.swap_s, self.policy = swap_s, policy
        self.now, self.events, self.seq = 0.0, [], 0
        self.pending: deque[Step] = deque()  # JetStream's queue, in arrival order
        self.held: dict[int, Step] = {}  # fair: taken from JetStream, waiting for a grant
        self.taken = 0  # jobs the consumer holds (today: handed to ComfyUI; fair: held or running)
        self.shares = fair_share.Shares()
        self.swaps = 0
        self.idle_with_work_s = 0.0
        self.done: list[Step] = []
        self.renders: dict[int, list[float]] = {}

    def at(self, when: float, what, *args) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, what, args))

    def run(self, chains) -> None:
        for chain, (at, user, model, renders) in enumerate(chains):
            self.renders[chain] = renders
            self.at(at, self.submit, Step(user, chain, 0, model, renders[0]))
        while self.events:
            when, _, what, args = heapq.heappop(self.events)
            waiting = self.pending or self.held or any(b.queue for b in self.boxes)
            if waiting:
                self.idle_with_work_s += (when - self.now) * sum(b.running is None for b in self.boxes)
            self.now = when
            what(*args)

    def submit(self, step: Step) -> None:
        step.submitted = self.now
        self.pending.append(step)
        self.dispatch()

    def dispatch(self) -> None:
        if self.policy == "least-loaded":
            while self.pending and self.taken < WORKERS:
                step = self.pending.popleft()
                self.taken += 1
                views = [BackendView(b.url, True, len(b.queue) + (b.running is not None), 0, b.last_used)
                         for b in self.boxes]
                box = next(b for b in self.boxes if b.url == preference(views, step.model, None)[0])
                box.last_used = self.now
                box.queue.append(step)
                self.start_next(box)
            return
        while self.pending and self.taken < HOLD:
            step = self.pending.popleft()
            self.taken += 1
            self.held[id(step)] = step
        jobs = [fair_share.Job(key, s.user, s.model, s.submitted, frozenset(b.url for b in self.boxes))
                for key, s in self.held.items()]
        backends = [fair_share.Backend(b.url, free=int(b.running is None), loaded=b.loaded,
                                       load=int(b.running is not None), last_used=b.last_used) for b in self.boxes]
        grants, self.shares = fair_share.plan(jobs, backends, self.shares,
                                              affinity_skips=0 if self.policy == "fair" else 2)
        for grant in grants:
            box = next(b for b in self.boxes if b.url == grant.url)
            box.last_used = self.now
            box.queue.append(self.held.pop(grant.job))  # type: ignore[call-overload]
            self.start_next(box)

    def start_next(self, box: Box) -> None:
        if box.running is not None or not box.queue:
            return
        step = box.running = box.queue.popleft()
        step.started = self.now
        load = self.swap_s if box.loaded != step.model else 0.0
        self.swaps += box.loaded is not None and box.loaded != step.model
        box.loaded = step.model
        box.busy_s += load + step.render_s
        self.at(self.now + load + step.render_s, self.finish, box)

    def finish(self, box: Box) -> None:
        step, box.running = box.running, None
        assert step is not None
        step.ended = self.now
        self.done.append(step)
        self.taken -= 1
        if self.policy != "least-loaded":
            share = self.shares.share(step.user)
            users = dict(self.shares.users)
            users[step.user] = fair_share.UserShare(share.running - 1, share.served, share.skips)
            self.shares = fair_share.Shares(users, self.shares.grants)
        if step.index + 1 < STEPS:
            nxt = Step(step.user, step.chain, step.index + 1, step.model, self.renders[step.chain][step.index + 1])
            self.at(self.now + FACE_CHECK_S, self.submit, nxt)
        self.start_next(box)
        self.dispatch()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def figures(sim: Sim) -> dict[str, float]:
    light = [s for s in sim.done if s.user != "heavy"]
    heavy = [s for s in sim.done if s.user == "heavy"]
    chains: dict[int, list[Step]] = {}
    for s in light:
        chains.setdefault(s.chain, []).append(s)
    light_done = [max(s.ended for s in c) - min(s.submitted for s in c) for c in chains.values()]
    makespan = max(s.ended for s in sim.done)
    busy = sum(b.busy_s for b in sim.boxes)
    return {
        "light p50": statistics.median(s.started - s.submitted for s in light),
        "light p95": pct([s.started - s.submitted for s in light], 0.95),
        "heavy p50": statistics.median(s.started - s.submitted for s in heavy),
        "heavy p95": pct([s.started - s.submitted for s in heavy], 0.95),
        "light done p95": pct(light_done, 0.95),
        "makespan": makespan,
        "idle %": 100 * (1 - busy / (len(sim.boxes) * makespan)),
        "idle+work %": 100 * sim.idle_with_work_s / (len(sim.boxes) * makespan),
        "swaps": float(sim.swaps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--render-s", type=float, default=8.0)
    parser.add_argument("--swap-s", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    chains = workload(args.seed, args.render_s)
    print(f"heavy: 50 chains at t=0; light: 5 users x 1 chain at t=1..5 s; {STEPS} steps/chain, "
          f"{len(MODELS)} models, render {args.render_s:g} s +-25 %, swap {args.swap_s:g} s, seed {args.seed}")
    columns = ["light p50", "light p95", "heavy p50", "heavy p95", "light done p95", "makespan", "idle %",
               "idle+work %", "swaps"]
    print(f"{'backends':>8} {'policy':<14}" + "".join(f"{c:>15}" for c in columns))
    for n in args.backends:
        results = {}
        for policy in ("least-loaded", "fair", "fair+affinity"):
            sim = Sim(n, args.swap_s, policy)
            sim.run(chains)
            assert len(sim.done) == len(chains) * STEPS
            results[policy] = figures(sim)
            print(f"{n:>8} {policy:<14}" + "".join(f"{results[policy][c]:>15.1f}" for c in columns))
        base, new = results["least-loaded"], results["fair+affinity"]
        print(f"{'':>8} {'ratio':<14}" + "".join(
            f"{(new[c] / base[c] if base[c] else float('nan')):>15.2f}" for c in columns))


if __name__ == "__main__":
    main()
