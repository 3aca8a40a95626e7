"""The planner's `threshold-*` streams on real Postgres: a redelivered result keeps its score once, planner
workers racing on one character's stream both get their score in, and the threshold read back is the one learned."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from contracts import REGISTRY, FaceScored, ImageRef, RequestChain, StepAccepted
from contracts.streams import chain_stream, threshold_stream
from services.planner.learning import LearnedThresholds
from services.planner.saga.decide import PlanAccepted, StartChain, decide
from services.planner.saga.state import ChainState, evolve
from services.planner.thresholds import ThresholdRule
from services.runtime.eventstore import EventStore
from tests.factories import wrap
from tests.unit.planner.test_saga import steps

pytestmark = pytest.mark.integration

RULE = ThresholdRule(min_scores=3, window=10)


def chain(character: str, reference: ImageRef) -> ChainState:
    request = RequestChain(chain_id=uuid.uuid4(), character_id=character, user_id="u-1", request_text="beach",
                           reference_image=reference)
    state = ChainState()
    for event in decide(state, StartChain(request, PlanAccepted(steps("background"), "rules"))).events:
        state = evolve(state, event)
    return state


def accepted(state: ChainState, score: float) -> StepAccepted:
    assert state.chain_id is not None
    return StepAccepted(chain_id=state.chain_id, step=0, attempt=1, image=ImageRef(
        sha256="b" * 64, media_type="image/png", width=8, height=8, bytes=10), score=score)


def cause(state: ChainState) -> object:
    assert state.chain_id is not None
    return wrap(FaceScored(chain_id=state.chain_id, step=0, attempt=1, score=50, faces_found=1, encoder="dlib"),
                chain_stream(state.chain_id))


async def test_scores_are_kept_once_each_under_races_and_the_threshold_learned_is_read_back(store: EventStore) -> None:
    character = f"learn-{uuid.uuid4().hex[:8]}"
    reference = ImageRef(sha256=uuid.uuid4().hex * 2, media_type="image/png", width=8, height=8, bytes=10)
    now = lambda: datetime.now(UTC)  # noqa: E731
    first = LearnedThresholds(store, now, RULE)
    one = chain(character, reference)
    result = cause(one)
    await first.record(one, accepted(one, 44.0), result)
    await first.record(one, accepted(one, 44.0), result)   # the same result, redelivered
    # Two planner replicas (separate caches) record four chains of the same character at once.
    others = [chain(character, reference) for _ in range(4)]
    replicas = [LearnedThresholds(store, now, RULE), LearnedThresholds(store, now, RULE)]
    await asyncio.gather(*(replicas[i % 2].record(state, accepted(state, 46.0 + i), cause(state))
                           for i, state in enumerate(others)))
    log = [r.envelope.open(REGISTRY) for r in await store.read_stream(threshold_stream(character, reference.sha256))]
    kept = sorted(e.score for e in log if e.type == "character.score_kept")
    assert kept == [44.0, 46.0, 47.0, 48.0, 49.0]
    learned = [e for e in log if e.type == "character.threshold_learned"]
    assert learned and learned[-1].scores == tuple(e.score for e in log if e.type == "character.score_kept")
    assert await first.threshold_for(character, reference.sha256) == learned[-1].threshold < 40.0
    # Best attempts and another reference teach nothing here.
    best = accepted(one, 30.0).model_copy(update={"decision": "best_attempt", "step": 1})
    await first.record(one, best, cause(one))
    assert await store.stream_version(threshold_stream(character, reference.sha256)) == len(log)
    assert await first.threshold_for(character, "d" * 64) is None
