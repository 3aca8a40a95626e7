"""The drift budget, pure: how far a chain's face has wandered step by step, and when it re-anchors.

Each accepted step is scored against the reference (the threshold) AND against the picture it edited.
A step's drift is 100 minus its similarity to the picture it edited; a chain's cumulative drift is the sum
over its accepted steps since its last anchor on the reference, a follow-up chain starting from its parent's
sum at the picture it edits. The sum is a path length: each step may pass the threshold while the face
creeps away, and the score against the reference only notices once it is below the threshold; the path
length bounds how far the face can have gone. Past the budget, the next step edits the reference image
instead of the last picture (`ChainReanchored`), and the sum starts again from 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from contracts import ChainReanchored, Event, ImageRef, StepScored
from services.planner.saga.state import ChainState

__all__ = ["accumulate", "edited_picture", "inherited", "of_accepted", "previous_image", "reanchor_reason", "reanchoring",
           "step_drift"]


def previous_image(input_image: ImageRef | None, reference: ImageRef | None) -> ImageRef | None:
    """The picture an attempt is also scored against: what it edited, unless that is the reference itself
    (its score against the reference says it already) or there is none (text-to-image)."""
    if input_image is None or reference is None or input_image.sha256 == reference.sha256:
        return None
    return input_image


def edited_picture(state: ChainState) -> ImageRef | None:
    """The picture the current step edits: its first attempt's input (a retry may render from another picture,
    e.g. a restore pass on its best attempt, but the step's drift is measured from where the step started)."""
    return state.attempts[0].input_image if state.attempts else None


def step_drift(previous_score: float | None, score: float | None, *, edited_reference: bool) -> float | None:
    """100 - similarity to the edited picture; a step that edited the reference uses its own score.
    None when it was not measured (an old facecheck, no face in the edited picture, text-to-image)."""
    similarity = previous_score if previous_score is not None else (score if edited_reference else None)
    if similarity is None:
        return None
    return round(max(0.0, 100.0 - similarity), 2)


def accumulate(cumulative: float, drift: float | None) -> float:
    """The chain's cumulative drift after a step; an unmeasured step adds nothing (it cannot be known)."""
    return round(cumulative + (drift or 0.0), 2)


def reanchor_reason(cumulative: float, budget: float | None) -> str | None:
    """Why the next step re-anchors on the reference, or None while the chain is within its budget."""
    if budget is None or cumulative <= budget:
        return None
    return f"cumulative drift {cumulative:g} past the budget {budget:g}: the step edits the reference image"


def inherited(parent_drifts: Sequence[float], branch_from_step: int | None) -> float:
    """A follow-up's starting drift: its parent's cumulative drift at the picture it edits (the accepted step
    `branch_from_step`, else the parent's last); 0 when the parent recorded none (chains before the budget)."""
    if not parent_drifts:
        return 0.0
    if branch_from_step is None:
        return parent_drifts[-1]
    return parent_drifts[branch_from_step] if 0 <= branch_from_step < len(parent_drifts) else 0.0


def of_accepted(state: ChainState, attempt: int, score: float | None,
                events: list[Event]) -> tuple[float | None, float | None]:
    """The accepted attempt's drift and the chain's sum after it; (None, None) for chains without a budget."""
    assert state.plan is not None and state.request is not None
    if state.plan.drift_budget is None:
        return None, None
    # The attempt's own score may be in this decision's events, not folded into the state yet.
    previous = next((e.previous_score for e in events if isinstance(e, StepScored) and e.attempt == attempt),
                    next((a.previous_score for a in state.attempts if a.number == attempt), None))
    edited = edited_picture(state)
    edited_reference = (edited is not None and state.request.reference_image is not None
                        and edited.sha256 == state.request.reference_image.sha256)
    step = step_drift(previous, score, edited_reference=edited_reference)
    return step, accumulate(state.drift, step)


def reanchoring(chain_id: UUID, step: int, cumulative: float, budget: float | None, step_input: ImageRef | None,
                reference: ImageRef | None) -> ChainReanchored | None:
    """The re-anchoring of step `step` on the reference, when the chain drifted past its budget."""
    reason = reanchor_reason(cumulative, budget)
    if reason is None or budget is None or step_input is None or reference is None \
            or step_input.sha256 == reference.sha256:
        return None
    return ChainReanchored(chain_id=chain_id, step=step, cumulative_drift=cumulative, budget=budget,
                           replaced_image=step_input, input_image=reference, reason=reason)

