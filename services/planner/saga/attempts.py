"""The commands that ask for an attempt of a step: the first, a retry (on the ladder, its next rung) and the
face-restore pass. Pure, like the rest of the saga; seeds are derived, never drawn.
"""

from __future__ import annotations

import hashlib
from uuid import UUID

from contracts import ImageRef, PlannedStep, RenderStep, StepRequested, StepRetried
from contracts.decision import Decision
from services.planner.saga.ladder import best_attempt, restore_step, retry_rung, rung_step
from services.planner.saga.state import AttemptRecord, ChainState

__all__ = ["attempts_left", "request_step", "restore", "retry", "retry_seed"]


def retry_seed(chain_id: UUID, step: int, attempt: int) -> int:
    """A new seed for a retry, the same every time the same attempt is decided."""
    digest = hashlib.sha256(f"{chain_id}:{step}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def request_step(chain_id: UUID, step: PlannedStep, attempt: int, seed: int, image: ImageRef | None,
                 style: str | None, reference: ImageRef | None = None, *, user_id: str | None = None):
    """The StepRequested event and the RenderStep command of one attempt of `step`, editing `image`."""
    requested = StepRequested(chain_id=chain_id, step=step.index, attempt=attempt, seed=seed, input_image=image)
    render = RenderStep(
        chain_id=chain_id, step=step.index, attempt=attempt, seed=seed, input_image=image, prompt=step.prompt,
        negative_prompt=step.negative_prompt, loras=step.loras, width=step.width, height=step.height,
        steps=step.steps, cfg=step.cfg, denoise=step.denoise, model=step.model, template=step.template, style=style,
        reference_image=reference, user_id=user_id,
    )
    return [requested], [render]


def retry(state: ChainState, current: AttemptRecord, reason: str, previous_score: float | None,
          seed: int | None = None) -> Decision:
    """The next attempt: a new seed (on the ladder, its next rung) after a drifted picture; `seed`: the same again."""
    assert state.chain_id is not None and state.planned_step is not None and state.plan is not None
    next_attempt = current.number + 1
    same_again = seed is not None
    seed = seed if seed is not None else retry_seed(state.chain_id, state.step, next_attempt)
    step, rung = state.planned_step, None
    # Rungs follow from how many attempts drifted (were scored): an attempt lost to a render failure climbs none.
    drifted = sum(a.score is not None for a in state.attempts) + (0 if same_again else 1)
    if state.plan.retry_ladder and drifted:
        rung = retry_rung(step, edits=current.input_image is not None, drifted=drifted)
        step = rung_step(step, rung)
    retried = StepRetried(chain_id=state.chain_id, step=state.step, next_attempt=next_attempt, new_seed=seed,
                          previous_score=previous_score, reason=reason,
                          rung=rung.name if rung and not same_again else None,
                          denoise=rung.denoise if rung else None, loras=rung.loras if rung else None)
    events, commands = request_step(state.chain_id, step, next_attempt, seed, current.input_image,
                                    state.plan.style, user_id=state.request.user_id if state.request else None)
    return Decision([retried, *events], commands)


def restore(state: ChainState, attempts: list[AttemptRecord], reason: str) -> Decision:
    """The ladder's last rung: the restore template over the best attempt's picture, with the reference."""
    plan, request, best = state.plan, state.request, best_attempt(attempts, lambda a: a.score)
    assert state.chain_id and state.planned_step and plan and plan.restore_template and request and best
    assert best.image is not None and best.score is not None
    next_attempt = attempts[-1].number + 1
    seed = retry_seed(state.chain_id, state.step, next_attempt)
    step = restore_step(state.planned_step, plan.restore_template)
    why = f"{reason}; retries used up: face restore of attempt {best.number} (score {best.score:.1f})"
    retried = StepRetried(chain_id=state.chain_id, step=state.step, next_attempt=next_attempt, new_seed=seed,
                          previous_score=attempts[-1].score, reason=why, rung="face_restore",
                          template=plan.restore_template, restores_attempt=best.number)
    events, commands = request_step(state.chain_id, step, next_attempt, seed, best.image, plan.style,
                                    reference=request.reference_image, user_id=request.user_id)
    return Decision([retried, *events], commands)


def attempts_left(state: ChainState, current: AttemptRecord) -> bool:
    assert state.plan is not None
    return current.number < 1 + state.plan.max_retries
