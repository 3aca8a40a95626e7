"""The gateway's pure read models: chain summaries and their images, characters, the edit tree."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from contracts import (
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainRequested,
    CharacterCreated,
    CharacterPersonaUpdated,
    CharacterReferenceSet,
    ImageRef,
    PlannedStep,
    StepAccepted,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
)
from contracts.audit import ChainAudit
from services.gateway.readmodels.chains import images_of, summarize
from services.gateway.readmodels.characters import CharacterView, fold_character
from services.gateway.readmodels.tree import build_tree

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CHAIN = uuid.UUID("00000000-0000-0000-0000-0000000000c1")


def ref(n: int) -> ImageRef:
    return ImageRef(sha256=f"{n:064x}", media_type="image/png", width=64, height=64, bytes=100)


def step(index: int, kind: str) -> PlannedStep:
    return PlannedStep(index=index, kind=kind, prompt=f"p{index}", width=512, height=512, seed=10 + index,
                       model="m", template="t", steps=8, cfg=1.0)


def chain_events(chain_id=CHAIN, *, parent=None, from_step=None):
    return [
        ChainRequested(chain_id=chain_id, character_id="mia", user_id="u-1", request_text="beach",
                       reference_image=ref(1), parent_chain_id=parent, branch_from_step=from_step),
        ChainPlanned(chain_id=chain_id, steps=(step(0, "background"), step(1, "pose")), planner="rules",
                     threshold=40.0),
        StepRequested(chain_id=chain_id, step=0, attempt=1, seed=10, input_image=ref(1)),
        StepRendered(chain_id=chain_id, step=0, attempt=1, image=ref(2), workflow_hash="h", backend="b", engine="e"),
        StepScored(chain_id=chain_id, step=0, attempt=1, score=20.0, faces_found=1, threshold=40.0),
        StepRetried(chain_id=chain_id, step=0, next_attempt=2, new_seed=99, previous_score=20.0, reason="drift"),
        StepRequested(chain_id=chain_id, step=0, attempt=2, seed=99, input_image=ref(1)),
        StepRendered(chain_id=chain_id, step=0, attempt=2, image=ref(3), workflow_hash="h", backend="b", engine="e"),
        StepScored(chain_id=chain_id, step=0, attempt=2, score=70.0, faces_found=1, threshold=40.0),
        StepAccepted(chain_id=chain_id, step=0, attempt=2, image=ref(3), score=70.0),
        StepRequested(chain_id=chain_id, step=1, attempt=1, seed=11, input_image=ref(3)),
        StepRendered(chain_id=chain_id, step=1, attempt=1, image=ref(4), workflow_hash="h", backend="b", engine="e"),
        StepScored(chain_id=chain_id, step=1, attempt=1, score=65.0, faces_found=1, threshold=40.0),
        StepAccepted(chain_id=chain_id, step=1, attempt=1, image=ref(4), score=65.0),
        ChainCompleted(chain_id=chain_id, final_image=ref(4), step_images=(ref(3), ref(4))),
    ]


def fold(events, audit=None):
    """The summary and image rows of a chain, folded the way the projector does."""
    audit = audit or ChainAudit(str(CHAIN))
    rows = []
    for version, event in enumerate(events, 1):
        at = T0 + timedelta(seconds=version)
        audit.apply(event, at, version)
        rows += images_of(CHAIN, audit, event, at)
    return summarize(CHAIN, audit), rows


def test_a_chain_folds_to_its_status_steps_scores_and_images() -> None:
    summary, rows = fold(chain_events())
    assert (summary.status, summary.user_id, summary.character_id, summary.version) == ("completed", "u-1", "mia", 15)
    assert summary.final_sha256 == ref(4).sha256 and summary.threshold == 40.0
    assert [(s.kind, s.attempts, s.score, s.sha256, s.accepted_attempt, s.state) for s in summary.steps] == [
        ("background", 2, 70.0, ref(3).sha256, 2, "accepted"), ("pose", 1, 65.0, ref(4).sha256, 1, "accepted")]
    assert summary.score == 65.0 and summary.created_at == T0 + timedelta(seconds=1)
    assert [(r.role, r.step, r.attempt, r.image.sha256[-1], r.kind) for r in rows] == [
        ("attempt", 0, 1, "2", "background"), ("attempt", 0, 2, "3", "background"), ("step", 0, 2, "3", "background"),
        ("attempt", 1, 1, "4", "pose"), ("step", 1, 1, "4", "pose"), ("final", -1, 0, "4", None)]
    assert rows[-1].score == 65.0 and {r.user_id for r in rows} == {"u-1"}


def test_folding_an_event_again_changes_nothing() -> None:
    events = chain_events()
    audit = ChainAudit(str(CHAIN))
    summary, _ = fold(events[:5], audit)
    audit.apply(events[2], T0, 3)
    audit.apply(events[4], T0, 5)
    assert summarize(CHAIN, audit) == summary


def test_a_step_shows_where_it_is_while_the_chain_runs() -> None:
    events = chain_events()
    states = []
    for n in range(2, len(events) + 1):
        summary, _ = fold(events[:n])
        states.append(summary.steps[0].state + "/" + summary.steps[1].state)
    assert states[:9] == ["waiting/waiting", "rendering/waiting", "scoring/waiting", "scoring/waiting",
                          "retrying/waiting", "rendering/waiting", "scoring/waiting", "scoring/waiting",
                          "accepted/waiting"]
    assert states[9] == "accepted/rendering" and states[-1] == "accepted/accepted"
    summary, _ = fold(events[:6])
    assert (summary.steps[0].attempts, summary.steps[0].score, summary.steps[0].sha256) == (1, 20.0, None)


def test_a_failed_chain_says_where_and_why() -> None:
    events = chain_events()[:5] + [ChainFailed(chain_id=CHAIN, step=0, reason="face drifted")]
    summary, _ = fold(events)
    assert summary.status == "failed" and summary.outcome == "face drifted"
    assert summary.steps[0].state == "failed" and summary.score is None


def test_events_before_the_request_have_no_owner_to_list_images_under() -> None:
    summary, rows = fold(chain_events()[3:4])
    assert not summary.requested and rows == []


def test_characters_fold_and_say_who_sees_and_edits_them() -> None:
    created = CharacterCreated(character_id="mia", name="Mia", gender="woman", personality="bold", occupation="pilot",
                               art_style="photoreal", owner="u-1")
    view = fold_character("mia", [
        (1, created, T0),
        (2, CharacterReferenceSet(character_id="mia", image=ref(1)), T0),
        (3, CharacterPersonaUpdated(character_id="mia", persona="Flies.", occupation="ace"), T0),
    ])
    assert (view.persona, view.personality, view.occupation, view.reference) == ("Flies.", "bold", "ace", ref(1))
    assert view.visible_to("u-1") and not view.visible_to("u-2")
    assert view.editable_by("u-1") and not view.editable_by("u-2")
    assert view.public()["has_reference"] is True and view.public()["avatar_url"].startswith("/avatar/mia?v=")
    builtin = fold_character("ayla", [(1, CharacterCreated(character_id="ayla", name="Ayla", gender="woman",
                                                           art_style="anime", builtin=True), T0)])
    # Anyone adjusts a built-in's persona, for themselves alone (their own stream).
    assert builtin.visible_to("anyone") and builtin.editable_by("anyone")
    assert not CharacterView("ghost").visible_to("u-1")


def test_the_tree_puts_branches_under_their_parents() -> None:
    root, _ = fold(chain_events(uuid.UUID(int=1)))
    root = replace(root, chain_id=uuid.UUID(int=1))
    branch, _ = fold(chain_events(uuid.UUID(int=2), parent=uuid.UUID(int=1), from_step=0))
    branch = replace(branch, chain_id=uuid.UUID(int=2), created_at=T0 + timedelta(hours=1))
    grandchild = replace(branch, chain_id=uuid.UUID(int=3), parent_chain_id=uuid.UUID(int=2),
                         created_at=T0 + timedelta(hours=2))
    orphan = replace(branch, chain_id=uuid.UUID(int=4), parent_chain_id=uuid.UUID(int=99))
    tree = build_tree([grandchild, orphan, branch, root])
    assert [n["chain_id"] for n in tree] == [str(uuid.UUID(int=1)), str(uuid.UUID(int=4))]
    child = tree[0]["branches"][0]
    assert child["chain_id"] == str(uuid.UUID(int=2)) and child["branch_from_step"] == 0
    assert child["branches"][0]["chain_id"] == str(uuid.UUID(int=3))
    assert tree[0]["score"] == 65.0 and [s["score"] for s in tree[0]["steps"]] == [70.0, 65.0]


def test_a_cycle_in_bad_data_loses_no_chain() -> None:
    a, _ = fold(chain_events(uuid.UUID(int=1), parent=uuid.UUID(int=2), from_step=0))
    b, _ = fold(chain_events(uuid.UUID(int=2), parent=uuid.UUID(int=1), from_step=0))
    a = replace(a, chain_id=uuid.UUID(int=1))
    b = replace(b, chain_id=uuid.UUID(int=2), created_at=T0 + timedelta(hours=1))
    tree = build_tree([a, b])

    def ids(nodes):
        return [n["chain_id"] for n in nodes] + [i for n in nodes for i in ids(n["branches"])]

    assert sorted(ids(tree)) == sorted([str(a.chain_id), str(b.chain_id)])
