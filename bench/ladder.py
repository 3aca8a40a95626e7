"""The retry ladder against plain re-rolls: renders per accepted step and GPU seconds per accepted picture.

    python -m bench.ladder [--steps N] [--seed S] [--p-base P] [--p-lower-denoise P] [--p-lower-lora P]
                           [--p-restore P] [--render-s S] [--restore-s S] [--hard-fraction F] [--p-hard P]

The real pure saga (`decide`/`evolve`) drives one-step edit chains; a simulated backend answers each RenderStep
from what the job asks for, as a real one would: a job at the plan's parameters drifts with probability
`--p-base` (0.5), one with lowered denoise with `--p-lower-denoise` (0.35), one with the style LoRA lowered
too with `--p-lower-lora` (0.3), a `face_restore` pass with `--p-restore` (0.1). A render costs `--render-s`
GPU seconds (8), a restore `--restore-s` (3: fewer steps, low denoise). A drifted picture scores 15-38, a kept
one 42-70 (threshold 40). Each step draws from its own RNG seeded by (seed, step), so every policy meets the
same luck (common random numbers): the first attempt of step k drifts under all policies or under none.
Outcomes are independent between attempts; the expected figures printed next to the simulated ones follow
from that. `--hard-fraction F` makes a share F of the steps "hard": at the plan's parameters they drift with
`--p-hard` (0.9), so re-seeding rarely helps, while the rungs that change parameters keep their probabilities
(a scenario, not a measurement: the expected column then assumes no hard steps). Prints a table and the ratio
of each policy to plain re-rolls in this run.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from dataclasses import dataclass

from contracts import (
    FaceScored,
    ImageRef,
    LoraUse,
    PlannedStep,
    RenderCompleted,
    RenderStep,
    RequestChain,
    ScoreFace,
    StepAccepted,
)
from services.planner.saga.decide import PlanAccepted, StartChain, decide
from services.planner.saga.state import ChainState, Status, evolve

THRESHOLD = 40.0
DENOISE = 0.9
STYLE = LoraUse(name="anime", strength=0.9, role="style")
FACE = LoraUse(name="luna", strength=1.0, role="character")


@dataclass(frozen=True)
class Backend:
    """Drift probability per kind of job, and GPU seconds per render."""

    p_base: float
    p_lower_denoise: float
    p_lower_lora: float
    p_restore: float
    render_s: float
    restore_s: float

    def kind(self, job: RenderStep) -> str:
        """What the job asks for, read from its parameters only (the backend knows nothing of rungs)."""
        if job.template == "face_restore":
            return "restore"
        if any(lora.role == "style" and lora.strength < STYLE.strength for lora in job.loras):
            return "lower_lora"
        if job.denoise is not None and job.denoise < DENOISE:
            return "lower_denoise"
        return "base"

    hard_fraction: float = 0.0
    p_hard: float = 0.9

    def drift_p(self, kind: str, hard: bool = False) -> float:
        if hard and kind == "base":
            return self.p_hard
        return {"base": self.p_base, "lower_denoise": self.p_lower_denoise, "lower_lora": self.p_lower_lora,
                "restore": self.p_restore}[kind]

    def seconds(self, kind: str) -> float:
        return self.restore_s if kind == "restore" else self.render_s


@dataclass(frozen=True)
class Policy:
    name: str
    retry_ladder: bool
    restore_template: str | None


@dataclass
class Tally:
    steps: int = 0
    accepted: int = 0
    failed: int = 0
    renders: int = 0
    restores: int = 0
    gpu_s: float = 0.0
    decide_s: float = 0.0


def image(n: int) -> ImageRef:
    return ImageRef(sha256=f"{n:064x}", media_type="image/png", width=512, height=512, bytes=100 + n)


def run_step(index: int, policy: Policy, backend: Backend, seed: int, tally: Tally) -> None:
    """One one-step chain from request to its end; the tally gains its renders, GPU seconds and outcome."""
    rng = random.Random(f"{seed}:{index}")
    hard = rng.random() < backend.hard_fraction
    chain_id = uuid.UUID(int=index + 1)
    step = PlannedStep(index=0, kind="background", prompt="on a beach", width=512, height=512, seed=index,
                       model="qwen-image-edit", template="qwen_edit", steps=8, cfg=1.0, denoise=DENOISE,
                       loras=(FACE, STYLE))
    request = RequestChain(chain_id=chain_id, character_id="luna", user_id="bench", request_text="on a beach",
                           reference_image=image(0))
    state, pending = ChainState(), [StartChain(request, PlanAccepted((step,), "rules"), threshold=THRESHOLD,
                                               retry_ladder=policy.retry_ladder,
                                               restore_template=policy.restore_template)]
    tally.steps += 1
    while pending:
        trigger = pending.pop(0)
        began = time.perf_counter()
        decision = decide(state, trigger)
        for event in decision.events:
            state = evolve(state, event)
        tally.decide_s += time.perf_counter() - began
        tally.accepted += sum(isinstance(e, StepAccepted) for e in decision.events)
        for command in decision.commands:
            if isinstance(command, RenderStep):
                kind = backend.kind(command)
                tally.renders += 1
                tally.restores += kind == "restore"
                tally.gpu_s += backend.seconds(kind)
                drifted = rng.random() < backend.drift_p(kind, hard)
                score = rng.uniform(15.0, 38.0) if drifted else rng.uniform(42.0, 70.0)
                # In the order the services answer: the render, then the score of the ScoreFace it leads to.
                pending.append(RenderCompleted(chain_id=chain_id, step=0, attempt=command.attempt,
                                               image=image(command.attempt), workflow_hash="sim", backend="sim",
                                               engine="sim"))
                pending.append(FaceScored(chain_id=chain_id, step=0, attempt=command.attempt, score=score,
                                          faces_found=1, encoder="sim"))
            elif not isinstance(command, ScoreFace):
                raise AssertionError(f"unexpected command {command.type}")
    tally.failed += state.status is Status.FAILED


def expected(policy: Policy, backend: Backend, max_retries: int = 3) -> tuple[float, float, float]:
    """(renders per step, GPU s per step, P(accepted)) for independent outcomes, by the ladder's rule."""
    kinds = ["base", "base", "lower_denoise", "lower_lora"] if policy.retry_ladder else ["base"] * 4
    kinds = kinds[:1 + max_retries] + (["restore"] if policy.retry_ladder and policy.restore_template else [])
    reach, renders, gpu = 1.0, 0.0, 0.0
    for kind in kinds:
        renders += reach
        gpu += reach * backend.seconds(kind)
        reach *= backend.drift_p(kind)
    return renders, gpu, 1.0 - reach


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--p-base", type=float, default=0.5)
    parser.add_argument("--p-lower-denoise", type=float, default=0.35)
    parser.add_argument("--p-lower-lora", type=float, default=0.3)
    parser.add_argument("--p-restore", type=float, default=0.1)
    parser.add_argument("--render-s", type=float, default=8.0)
    parser.add_argument("--restore-s", type=float, default=3.0)
    parser.add_argument("--hard-fraction", type=float, default=0.0)
    parser.add_argument("--p-hard", type=float, default=0.9)
    args = parser.parse_args()
    backend = Backend(args.p_base, args.p_lower_denoise, args.p_lower_lora, args.p_restore, args.render_s,
                      args.restore_s, args.hard_fraction, args.p_hard)
    policies = [Policy("plain re-roll (today)", False, None), Policy("ladder, no restore", True, None),
                Policy("ladder + face_restore", True, "face_restore")]
    print(f"{args.steps} one-step chains per policy, seed {args.seed}, max_retries 3, on_exhausted fail; drift p: "
          f"base {args.p_base}, lower_denoise {args.p_lower_denoise}, lower_lora {args.p_lower_lora}, "
          f"restore {args.p_restore}; GPU s: render {args.render_s}, restore {args.restore_s}"
          + (f"; hard steps {args.hard_fraction:.0%} (p {args.p_hard} at the plan's parameters)"
             if args.hard_fraction else ""))
    header = (f"{'policy':<24}{'accepted':>9}{'failed':>8}{'renders':>9}{'restores':>9}{'renders/acc':>12}"
              f"{'GPU s/acc':>11}{'expected':>10}{'vs plain':>10}{'fail %':>8}{'decide us/step':>16}")
    print(header)
    print("-" * len(header))
    baseline = None
    for policy in policies:
        tally = Tally()
        for index in range(args.steps):
            run_step(index, policy, backend, args.seed, tally)
        per_accepted = tally.gpu_s / tally.accepted
        baseline = baseline or per_accepted
        _, gpu, p_ok = expected(policy, backend)
        print(f"{policy.name:<24}{tally.accepted:>9}{tally.failed:>8}{tally.renders:>9}{tally.restores:>9}"
              f"{tally.renders / tally.accepted:>12.3f}{per_accepted:>11.2f}{gpu / p_ok:>10.2f}"
              f"{per_accepted / baseline:>10.3f}{100 * tally.failed / tally.steps:>8.2f}"
              f"{1e6 * tally.decide_s / tally.steps:>16.0f}")
    print("renders/acc: renders per accepted step; GPU s/acc: GPU seconds per accepted picture (expected: the same "
          "figure for independent outcomes); vs plain: GPU s/acc over plain re-roll's in this run")


if __name__ == "__main__":
    main()
