"""What a person reads of the learned threshold and the drift budget: `likeness audit`, the live lines."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts import ChainReanchored, FaceScored, RenderCompleted
from contracts.audit import build_audit
from services.launcher.chain_commands import render_audit
from services.launcher.console import describe
from services.planner.saga.decide import decide
from services.planner.saga.state import ChainState, evolve
from tests.unit.planner.test_saga import CHAIN, REFERENCE, image, start

AT = datetime(2026, 12, 7, tzinfo=UTC)


def chain_events(**policy) -> list:
    """Two steps: the first drifts past a budget of 30, so the second re-anchors."""
    state, events = ChainState(), []
    triggers = [start("background", "outfit", **policy),
                RenderCompleted(chain_id=CHAIN, step=0, attempt=1, image=image(1), workflow_hash="h", backend="b",
                                engine="draft"),
                FaceScored(chain_id=CHAIN, step=0, attempt=1, score=60.0, faces_found=1, encoder="dlib"),
                RenderCompleted(chain_id=CHAIN, step=1, attempt=1, image=image(2), workflow_hash="h", backend="b",
                                engine="draft"),
                FaceScored(chain_id=CHAIN, step=1, attempt=1, score=58.0, faces_found=1, encoder="dlib")]
    for trigger in triggers:
        for event in decide(state, trigger).events:
            state = evolve(state, event)
            events.append(event)
    return events


def test_the_audit_shows_the_thresholds_source_the_drift_and_the_re_anchoring() -> None:
    events = chain_events(threshold=36.5, threshold_source="learned", drift_budget=30.0)
    audit = build_audit(str(CHAIN), [(e, AT) for e in events])
    assert (audit.threshold, audit.threshold_source, audit.drift_budget) == (36.5, "learned", 30.0)
    assert [(s.drift, s.cumulative_drift) for s in audit.steps] == [(40.0, 40.0), (42.0, 42.0)]
    assert audit.steps[1].reanchored is not None and audit.steps[1].attempts[0].input_image == REFERENCE
    text = render_audit(audit)
    assert "threshold: 36.5 (learned)" in text and "drift budget: 30, inherited drift 0" in text
    assert "re-anchored: cumulative drift 40 past the budget 30: the step edits the reference image" in text
    assert "drift 40.0, cumulative 40" in text
    anchor = next(e for e in events if isinstance(e, ChainReanchored))
    assert describe(anchor, ("background", "outfit")).endswith(
        "re-anchored on the reference: cumulative drift 40 past the budget 30: the step edits the reference image")


def test_a_chain_without_a_budget_audits_without_drift() -> None:
    text = render_audit(build_audit(str(CHAIN), [(e, AT) for e in chain_events()]))
    assert "threshold: 40.0 (default)" in text and "drift" not in text and "re-anchored" not in text
