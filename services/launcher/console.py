"""One line of text per chain event, for people following a chain in a terminal.

Steps are counted from 1, as the page counts them (the events count from 0).
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts import Message

__all__ = ["describe", "describe_live", "step_label"]


def step_label(step: int, plan: Sequence[str] = ()) -> str:
    """`step 2/3 outfit` once the plan (the steps' kinds) is known, else `step 2`; `step` counts from 0."""
    if step < len(plan):
        return f"step {step + 1}/{len(plan)} {plan[step]}"
    return f"step {step + 1}"


def describe(message: Message, plan: Sequence[str] = ()) -> str:
    """A short human line: step, attempt, seed, score, decision; `plan` names the steps' kinds when known."""
    m = message
    match m.type:
        case "chain.requested":
            return f"requested: {m.request_text!r}"
        case "chain.refused":
            return f"refused: {m.reason} (rule {m.rule})"
        case "chain.planned":
            kinds = " -> ".join(s.kind for s in m.steps)
            note = f" ({m.planner_note})" if m.planner_note else ""
            source = f" ({m.threshold_source})" if m.threshold_source and m.threshold_source != "default" else ""
            return f"planned by {m.planner}{note}: {kinds}; threshold {m.threshold:g}{source}"
        case "chain.reanchored":
            return f"{step_label(m.step, plan)}: re-anchored on the reference: {m.reason}"
        case "chain.step_requested":
            return f"{step_label(m.step, plan)} attempt {m.attempt}: rendering (seed {m.seed})"
        case "chain.step_rendered":
            return f"{step_label(m.step, plan)} attempt {m.attempt}: rendered by {m.engine} on {m.backend}"
        case "chain.step_scored":
            return (f"{step_label(m.step, plan)} attempt {m.attempt}: face score {m.score:.1f} "
                    f"(threshold {m.threshold:g})")
        case "chain.step_accepted" if m.score is None:
            return f"{step_label(m.step, plan)}: accepted attempt {m.attempt} (text-to-image: not face-checked)"
        case "chain.step_accepted":
            best = ", the best of its attempts" if m.decision == "best_attempt" else ""
            return f"{step_label(m.step, plan)}: accepted attempt {m.attempt} (score {m.score:.1f}{best})"
        case "chain.step_retried":
            return f"{step_label(m.step, plan)}: retry as attempt {m.next_attempt} with seed {m.new_seed}: {m.reason}"
        case "chain.step_failed":
            return f"{step_label(m.step, plan)} attempt {m.attempt}: {m.stage} failed: {m.reason}"
        case "chain.completed":
            return f"completed: {len(m.step_images)} steps"
        case "chain.failed":
            return f"FAILED at step {m.step + 1}: {m.reason}"
        case "chain.cancelled":
            return f"cancelled: {m.reason or ''}"
    return m.type


def describe_live(message: Message) -> str | None:
    """One line for a live render message: where the attempt waits, or how far it got."""
    where = f"  step {message.step + 1} attempt {message.attempt}"  # type: ignore[attr-defined]
    if message.type == "render.waiting":
        return (f"{where}: waiting for a render backend to come back "
                f"({message.waited_s:.0f} s of at most {message.limit_s:.0f} s)")  # type: ignore[attr-defined]
    if message.type != "render.progress":
        return None
    if message.queue_position is not None:  # type: ignore[attr-defined]
        ahead = message.queue_position  # type: ignore[attr-defined]
        return f"{where}: in the backend's queue, {ahead} prompt{'s' if ahead != 1 else ''} ahead"
    return f"{where}: {100 * message.value // message.max}%"  # type: ignore[attr-defined]
