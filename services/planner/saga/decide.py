"""The chain saga's policy: given a chain's state and what just happened, which events to
record and which commands to send. Pure: no I/O, no clock, no randomness (seeds are derived).

A result that does not match the attempt in flight (a redelivery, a late answer after a retry
or a cancel) decides nothing, which is what makes the planner's handlers idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from contracts import (
    AttemptScore,
    CancelChain,
    ChainCancelled,
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainRefused,
    ChainRequested,
    Event,
    FaceCheckFailed,
    FaceScored,
    ImageRef,
    PlannedStep,
    RenderCompleted,
    RenderFailed,
    RequestChain,
    ScoreFace,
    StepAccepted,
    StepFailed,
    StepRendered,
    StepScored,
    variant_chain_id,
)
from contracts.decision import Decision
from contracts.usage import ModelUsage
from services.planner.saga.attempts import attempts_left, request_step, restore, retry, retry_seed
from services.planner.saga.ladder import is_restore, restore_due
from services.planner.saga import drift
from services.planner.saga.state import AttemptRecord, ChainState, Status

__all__ = [
    "Abandoned",
    "Decision",
    "PlanAccepted",
    "PlanRefused",
    "StartChain",
    "decide",
    "retry_seed",
    "variant_chain_id",
]

# Kinds of render failure that say nothing about the plan: another attempt may well succeed.
_TRANSIENT_RENDER_FAILURES = {"unreachable", "timeout", "interrupted", "internal"}


@dataclass(frozen=True)
class PlanAccepted:
    steps: tuple[PlannedStep, ...]
    planner: Literal["llm", "rules"]
    note: str | None = None
    style: str | None = None
    # `--count N`: the first chain of the request asks for N - 1 more like it.
    count: int = 1
    llm_usage: ModelUsage | None = None


@dataclass(frozen=True)
class PlanRefused:
    reason: str
    rule: str
    llm_usage: ModelUsage | None = None


@dataclass(frozen=True)
class StartChain:
    """A chain request, planned by the application (planning may call an LLM, so not in here)."""

    request: RequestChain
    plan: PlanAccepted | PlanRefused
    threshold: float = 40.0
    max_retries: int = 3
    on_exhausted: Literal["fail", "accept_best"] = "fail"
    # False: plain re-rolls, as before the ladder (see services.planner.saga.ladder).
    retry_ladder: bool = False
    restore_template: str | None = None
    threshold_source: Literal["default", "character", "learned"] = "default"
    # A follow-up's parent's cumulative drift at the picture it edits (`drift.inherited`); a None budget: none.
    inherited_drift: float = 0.0
    drift_budget: float | None = None


@dataclass(frozen=True)
class Abandoned:
    """A service gave up on (dead-lettered) an attempt's command; `result` stands for the answer that
    will never come. Final: the service already retried it, so the chain fails where a real result
    of the same kind would retry (another round would only repeat those retries)."""

    result: RenderFailed | FaceCheckFailed


Trigger = StartChain | CancelChain | RenderCompleted | RenderFailed | FaceScored | FaceCheckFailed | Abandoned


def decide(state: ChainState, trigger: Trigger) -> Decision:
    final = False
    if isinstance(trigger, Abandoned):
        trigger, final = trigger.result, True
    match trigger:
        case StartChain():
            return _start(state, trigger)
        case CancelChain():
            if state.status is not Status.RUNNING:
                return Decision()
            return Decision([ChainCancelled(chain_id=trigger.chain_id, reason=trigger.reason,
                                            requested_by=trigger.requested_by)])
    current = state.current
    if state.status is not Status.RUNNING or current is None or (trigger.step, trigger.attempt) != (
        state.step, current.number
    ):
        return Decision()
    match trigger:
        case RenderCompleted() if current.image is None and current.reason is None:
            return _rendered(state, trigger)
        case RenderFailed() if current.image is None and current.reason is None:
            return _render_failed(state, current, trigger, may_retry=not final)
        case FaceScored() if current.image is not None and current.score is None and current.reason is None:
            return _scored(state, current, trigger)
        case FaceCheckFailed() if current.image is not None and current.score is None and current.reason is None:
            failed = StepFailed(chain_id=state.chain_id, step=state.step, attempt=current.number,
                                reason=trigger.reason, stage="facecheck")
            return Decision([failed, _chain_failed(state, f"face check failed: {trigger.reason}", current)])
    return Decision()


def _start(state: ChainState, start: StartChain) -> Decision:
    if state.status is not Status.NEW:
        return Decision()
    request, plan = start.request, start.plan
    # Only the request a user made fans out; the chains it asks for (and the requests of a POST /batch)
    # already know their place.
    siblings = plan.count - 1 if isinstance(plan, PlanAccepted) and request.variant_count == 1 else 0
    if siblings:
        request = request.model_copy(update={"batch_id": request.chain_id, "variant_count": plan.count})
    requested = ChainRequested(**request.model_dump(exclude={"type", "version"}))
    if isinstance(plan, PlanRefused):
        return Decision([requested, ChainRefused(chain_id=request.chain_id, reason=plan.reason, rule=plan.rule,
                                                 llm_usage=plan.llm_usage)])
    planned = ChainPlanned(chain_id=request.chain_id, steps=plan.steps, planner=plan.planner, planner_note=plan.note,
                           threshold=start.threshold, max_retries=start.max_retries, on_exhausted=start.on_exhausted,
                           style=plan.style, llm_usage=plan.llm_usage, retry_ladder=start.retry_ladder,
                           restore_template=start.restore_template, threshold_source=start.threshold_source,
                           inherited_drift=start.inherited_drift or None, drift_budget=start.drift_budget)
    first = plan.steps[0]
    step_input = request.input_image or request.reference_image
    # A follow-up of a chain that already drifted past the budget starts again from the reference.
    anchored = drift.reanchoring(request.chain_id, 0, start.inherited_drift, start.drift_budget, step_input,
                                 request.reference_image)
    if anchored is not None:
        step_input = anchored.input_image
    events, commands = request_step(request.chain_id, first, 1, first.seed, step_input, plan.style,
                                    user_id=request.user_id)
    variants = [
        request.model_copy(update={"chain_id": variant_chain_id(request.chain_id, i), "variant_index": i})
        for i in range(1, siblings + 1)
    ]
    return Decision([requested, planned, *([anchored] if anchored else []), *events], [*commands, *variants])


def _rendered(state: ChainState, done: RenderCompleted) -> Decision:
    assert state.request is not None
    rendered = StepRendered(chain_id=done.chain_id, step=done.step, attempt=done.attempt, image=done.image,
                            workflow_hash=done.workflow_hash, backend=done.backend, engine=done.engine,
                            timings=done.timings, cost_usd=done.cost_usd)
    if state.request.reference_image is None:
        # Text-to-image: no reference face to hold the picture to, so it is kept as rendered (and says so).
        return _accept(state, done.image, None, done.attempt, "unscored", [rendered])
    score = ScoreFace(chain_id=done.chain_id, step=done.step, attempt=done.attempt, image=done.image,
                      reference_image=state.request.reference_image, character_id=state.request.character_id,
                      previous_image=drift.previous_image(drift.edited_picture(state), state.request.reference_image))
    return Decision([rendered], [score])


def _render_failed(state: ChainState, current: AttemptRecord, failed: RenderFailed, *, may_retry: bool) -> Decision:
    where = f" at node {failed.node_id} ({failed.node_type})" if failed.node_id else ""
    reason = f"render {failed.error_kind}{where}: {failed.reason}"
    step_failed = StepFailed(chain_id=failed.chain_id, step=failed.step, attempt=failed.attempt, reason=reason,
                             stage="render")
    assert state.plan is not None
    if is_restore(state.plan, current.number):
        # The restore pass is a bonus on top of the retries: without it the step ends as the retries left it.
        attempts = [*state.attempts[:-1], replace(current, reason=reason)]
        return _exhausted(state, attempts, [step_failed], state.plan.threshold)
    if may_retry and failed.error_kind in _TRANSIENT_RENDER_FAILURES and attempts_left(state, current):
        # Nothing was wrong with the picture, there was none: the same seed is asked for again, so a
        # user's `--seed` survives a backend that went away.
        again = retry(state, current, reason, previous_score=None, seed=current.seed)
        return Decision([step_failed, *again.events], again.commands)
    return Decision([step_failed, _chain_failed(state, reason, replace(current, reason=reason))])


def _scored(state: ChainState, current: AttemptRecord, scored: FaceScored) -> Decision:
    assert state.plan is not None and current.image is not None
    threshold = state.plan.threshold
    step_scored = StepScored(chain_id=scored.chain_id, step=scored.step, attempt=scored.attempt, score=scored.score,
                             faces_found=scored.faces_found, threshold=threshold, previous_score=scored.previous_score)
    if scored.score >= threshold:
        return _accept(state, current.image, scored.score, current.number, "threshold", [step_scored])
    reason = f"face score {scored.score:.1f} below threshold {threshold:g}"
    if scored.reason:
        reason += f" ({scored.reason})"
    if attempts_left(state, current):
        again = retry(state, current, reason, previous_score=scored.score)
        return Decision([step_scored, *again.events], again.commands)
    attempts = [*state.attempts[:-1], AttemptRecord(current.number, current.seed, current.input_image,
                                                     current.image, scored.score)]
    if restore_due(state.plan, state.request, current.number):
        restored = restore(state, attempts, reason)
        return Decision([step_scored, *restored.events], restored.commands)
    return _exhausted(state, attempts, [step_scored], threshold)


def _exhausted(state: ChainState, attempts: list[AttemptRecord], events: list[Event], threshold: float) -> Decision:
    """Every attempt of the step is spent: keep the best one if the plan says so, else end the chain."""
    assert state.plan is not None
    if state.plan.on_exhausted == "accept_best":
        best = max(attempts, key=lambda a: a.score or 0.0)
        if best.image is not None and best.score is not None:
            return _accept(state, best.image, best.score, best.number, "best_attempt", events)
    best_score = max(a.score or 0.0 for a in attempts)
    summary = (f"face drifted on all {len(attempts)} attempts of step {state.step}: "
               f"best score {best_score:.1f} below threshold {threshold:g}")
    return Decision([*events, _chain_failed(state, summary, attempts[-1], attempts)])


def _accept(state: ChainState, image: ImageRef, score: float | None, attempt: int, why: str,
            events: list[Event]) -> Decision:
    assert state.plan is not None and state.chain_id is not None and state.request is not None
    step_drift, cumulative = drift.of_accepted(state, attempt, score, events)
    accepted = StepAccepted(chain_id=state.chain_id, step=state.step, attempt=attempt, image=image, score=score,
                            decision=why, drift=step_drift, cumulative_drift=cumulative)
    images = (*state.accepted, image)
    if state.step + 1 == len(state.plan.steps):
        done = ChainCompleted(chain_id=state.chain_id, final_image=image, step_images=images)
        return Decision([*events, accepted, done])
    following = state.plan.steps[state.step + 1]
    anchored = drift.reanchoring(state.chain_id, following.index, cumulative or 0.0, state.plan.drift_budget,
                                 image, state.request.reference_image)
    step_input = anchored.input_image if anchored is not None else image
    more, commands = request_step(state.chain_id, following, 1, following.seed, step_input, state.plan.style,
                                  user_id=state.request.user_id)
    return Decision([*events, accepted, *([anchored] if anchored else []), *more], commands)


def _chain_failed(state: ChainState, reason: str, last: AttemptRecord,
                  attempts: list[AttemptRecord] | None = None) -> ChainFailed:
    assert state.chain_id is not None
    records = attempts if attempts is not None else [*state.attempts[:-1], last]
    scores = tuple(AttemptScore(attempt=a.number, seed=a.seed, score=a.score, reason=a.reason) for a in records)
    return ChainFailed(chain_id=state.chain_id, step=state.step, reason=reason, attempts=scores)
