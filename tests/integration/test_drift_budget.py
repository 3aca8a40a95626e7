"""The drift budget and the learned threshold through the real planner, renderer (draft engine) and facecheck
runtimes, over real NATS JetStream and Postgres.

The face model is scripted: each new picture it sees gets the next identity coordinate of a script, so the
similarities, and with them every decision, are known in advance while the pictures stay the real draft
renders the renderer stored. The reference sits at 0; similarity is 100 - 25 x the distance.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import numpy as np
import pytest
from PIL import Image

from contracts import (
    CHAIN_ENDS,
    REGISTRY,
    ChainPlanned,
    ChainReanchored,
    CharacterScoreKept,
    CharacterThresholdLearned,
    ImageRef,
    Message,
    RequestChain,
    StepAccepted,
    StepRequested,
    StepScored,
)
from contracts.audit import build_audit
from contracts.streams import chain_stream, threshold_stream
from contracts.subjects import command_subject
from services.facecheck.encoder import DetectedFace
from services.facecheck.service import build_runtime as facecheck_runtime
from services.facecheck.settings import FacecheckSettings
from services.launcher.chain_commands import render_audit
from services.planner.service import build_runtime as planner_runtime
from services.planner.settings import PlannerSettings
from services.renderer.service import build_runtime as renderer_runtime
from services.renderer.settings import RendererSettings
from services.runtime.blobs import BlobStore
from services.runtime.eventstore import EventStore
from tests.conftest import Backends
from tests.factories import wrap
from tests.runtimes import consumers_removed_after, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# Picture 1: 2.3 from the reference (score 42.5); picture 2 on the other side (score 42.5, nothing like
# picture 1: similarity 0, drift 100); every later one like picture 1.
SCRIPT = [2.3, -2.3]
LATER = 2.3


class ScriptedFaces:
    """One face per picture; a picture's identity coordinate is fixed the first time it is seen."""

    name = "test/scripted"

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def encode(self, image: np.ndarray) -> list[DetectedFace]:
        key = hashlib.sha256(image.tobytes()).hexdigest()
        if key not in self.seen:
            # The first picture is the reference (scoring embeds it before anything else).
            n = len(self.seen)
            self.seen[key] = 0.0 if n == 0 else (SCRIPT[n - 1] if n - 1 < len(SCRIPT) else LATER)
        height, width = image.shape[:2]
        return [DetectedFace(x=width * 0.2, y=height * 0.2, width=width * 0.5, height=height * 0.5, det_score=0.99,
                             landmarks=np.zeros((5, 2), dtype=np.float32),
                             embedding=np.array([self.seen[key]], dtype=np.float32))]

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return max(0.0, 100.0 - 25.0 * abs(float(a[0]) - float(b[0])))


@pytest.fixture
async def system(backends: Backends) -> AsyncIterator[None]:
    """Planner (budget 120, learning after 2 kept scores), draft renderer, scripted facecheck; consumers removed after."""
    common = dict(nats_url=backends.nats_url, database_url=backends.database_url, environment="test",
                  ack_wait_s=10.0, retry_delay_s=0.2, max_deliver=3, graceful_timeout_s=5.0)
    planner = PlannerSettings(**common, drift_budget=120.0, threshold_learn_min_scores=2)
    faces = ScriptedFaces()
    async with consumers_removed_after(backends.nats_url), running(planner_runtime(planner)), \
            running(renderer_runtime(RendererSettings(**common))), \
            running(facecheck_runtime(FacecheckSettings(**common), encoder_factory=lambda _settings: faces)):
        yield


async def reference_image(nc: nats.NATS) -> ImageRef:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (180, 140, 120)).save(buffer, format="PNG")
    return await (await BlobStore.open(nc.jetstream(timeout=5))).put_image(buffer.getvalue())


async def run_chain(nc: nats.NATS, store: EventStore, request: RequestChain) -> list[Message]:
    envelope = wrap(request, chain_stream(request.chain_id))
    await nc.jetstream(timeout=5).publish(command_subject("chain.request"), envelope.to_bytes(),
                                          headers={"Nats-Msg-Id": str(envelope.event_id)})
    async with asyncio.timeout(60):
        while True:
            events = [r.envelope.open(REGISTRY) for r in await store.read_stream(chain_stream(request.chain_id))]
            if any(e.type in CHAIN_ENDS for e in events):
                return events
            await asyncio.sleep(0.1)


def of(events: list[Message], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


async def test_a_drifting_chain_re_anchors_and_its_character_learns_a_threshold(
    system: None, nc: nats.NATS, store: EventStore
) -> None:
    character = f"drift-{uuid.uuid4().hex[:8]}"
    reference = await reference_image(nc)
    first = RequestChain(chain_id=uuid.uuid4(), character_id=character, user_id="u-1",
                         request_text="at the beach wearing a red dress", reference_image=reference)
    events = await run_chain(nc, store, first)
    assert events[-1].type == "chain.completed", events[-1]
    planned = of(events, ChainPlanned)[0]
    assert (planned.threshold, planned.threshold_source, planned.drift_budget) == (40.0, "default", 120.0)
    scored = of(events, StepScored)
    # Step 1 edited the reference (its own score is the similarity); step 2 was scored against picture 1 too.
    assert [(s.score, s.previous_score) for s in scored] == [(42.5, None), (42.5, 0.0)]
    kept = of(events, StepAccepted)
    assert [(k.drift, k.cumulative_drift) for k in kept] == [(57.5, 57.5), (100.0, 157.5)]
    assert not of(events, ChainReanchored)  # the budget was passed at the last step: nothing left to anchor

    # The two kept scores taught the character's face in this reference a threshold.
    learned_log = [r.envelope.open(REGISTRY) for r in
                   await store.read_stream(threshold_stream(character, reference.sha256))]
    assert [e.type for e in learned_log] == ["character.score_kept", "character.score_kept",
                                             "character.threshold_learned"]
    assert [e.score for e in of(learned_log, CharacterScoreKept)] == [42.5, 42.5]
    learned = of(learned_log, CharacterThresholdLearned)[0]
    assert (learned.threshold, learned.scores, learned.quantile_score) == (37.5, (42.5, 42.5), 42.5)

    # A follow-up edits the first chain's picture: it inherits 157.5, past the budget, so it re-anchors.
    final = kept[-1].image
    follow = RequestChain(chain_id=uuid.uuid4(), character_id=character, user_id="u-1", request_text="now make her wave",
                          reference_image=reference, parent_chain_id=first.chain_id, branch_from_step=1,
                          input_image=final)
    events = await run_chain(nc, store, follow)
    assert events[-1].type == "chain.completed", events[-1]
    planned = of(events, ChainPlanned)[0]
    assert (planned.threshold, planned.threshold_source, planned.inherited_drift) == (37.5, "learned", 157.5)
    anchor = of(events, ChainReanchored)[0]
    assert (anchor.step, anchor.replaced_image, anchor.input_image) == (0, final, reference)
    assert of(events, StepRequested)[0].input_image == reference
    assert of(events, StepScored)[0].threshold == 37.5

    text = render_audit(build_audit(str(follow.chain_id), [(e, datetime.now(UTC)) for e in events]))
    assert "threshold: 37.5 (learned)" in text
    assert "re-anchored: cumulative drift 157.5 past the budget 120" in text
