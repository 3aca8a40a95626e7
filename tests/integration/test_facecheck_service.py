"""The facecheck service over real NATS JetStream: ScoreFace in, FaceScored / FaceCheckFailed out, real faces."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import REGISTRY
from contracts.base import ImageRef
from contracts.envelope import Envelope
from contracts.face import FaceCheckFailed, FaceScored, ScoreFace
from contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM, command_subject, stream_filter
from services.facecheck.dlib_encoder import load_dlib
from services.facecheck.scoring import NO_FACE
from services.facecheck.handlers import CONSUMER
from services.facecheck.service import build_runtime
from services.facecheck.settings import FacecheckSettings
from services.runtime.blobs import BlobStore
from services.runtime.ids import derived_id
from tests.conftest import Backends
from tests.runtimes import running
from tests.faces import corrupt_image, face_of, no_face_image, same_face_variant, two_faces_image
from tests.factories import wrap

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def service(backends: Backends) -> AsyncIterator[None]:
    """The facecheck runtime in this process, on the test NATS, with dlib loaded once."""
    settings = FacecheckSettings(nats_url=backends.nats_url, database_url=backends.database_url, environment="test",
                                 ack_wait_s=10.0, retry_delay_s=0.2, max_deliver=3, graceful_timeout_s=5.0)
    encoder = load_dlib()
    async with running(build_runtime(settings, encoder_factory=lambda _settings: encoder)):
        yield
    nc = await nats.connect(backends.nats_url, connect_timeout=5)
    await nc.jetstream().delete_consumer(COMMANDS_STREAM, CONSUMER)  # work-queue filters must not overlap later
    await nc.drain()


@pytest.fixture
async def blobs(nc: nats.NATS) -> BlobStore:
    return await BlobStore.open(nc.jetstream(timeout=5))


async def score(nc: nats.NATS, image: ImageRef, reference: ImageRef, *, times: int = 1) -> list[Envelope]:
    """Send one ScoreFace (`times` copies, as a redelivery would) and collect the results on its chain."""
    chain = uuid.uuid4()
    command = ScoreFace(chain_id=chain, step=0, attempt=1, image=image, reference_image=reference,
                        character_id="luna")
    envelope = wrap(command, f"chain-{chain}")
    js = nc.jetstream(timeout=5)
    for _ in range(times):
        # A fresh Nats-Msg-Id each time, so JetStream delivers every copy to the service.
        await js.publish(command_subject("face.score"), envelope.to_bytes(), headers={"Nats-Msg-Id": str(uuid.uuid4())})
    sub = await js.pull_subscribe(stream_filter("face", f"chain-{chain}"), durable=None, stream=EVENTS_STREAM,
                                  config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL))
    results: list[Envelope] = []
    try:
        async with asyncio.timeout(30):
            while not results:
                try:
                    results += [Envelope.from_bytes(m.data) for m in await sub.fetch(10, timeout=1.0)]
                except nats.errors.TimeoutError:
                    pass
        if times > 1:
            await asyncio.sleep(1.5)  # give the copies time to be handled, then count what the stream kept
            try:
                results += [Envelope.from_bytes(m.data) for m in await sub.fetch(10, timeout=1.0)]
            except nats.errors.TimeoutError:
                pass
    finally:
        await sub.unsubscribe()
    for result in results:
        assert result.stream == f"chain-{chain}" and result.causation_id == str(envelope.event_id)
        assert result.event_id == derived_id(envelope.event_id, "face-result")
        assert result.correlation_id == envelope.correlation_id and result.actor == "tests"
    return results


async def put_raw(blobs: BlobStore, data: bytes) -> ImageRef:
    sha = await blobs.put_bytes(data, "image/png")
    assert sha == hashlib.sha256(data).hexdigest()
    return ImageRef(sha256=sha, media_type="image/png", width=1, height=1, bytes=len(data))


async def test_same_and_different_people(service: None, nc: nats.NATS, blobs: BlobStore) -> None:
    reference = await blobs.put_image(face_of(2))
    (same,) = await score(nc, await blobs.put_image(same_face_variant(2, "jpeg")), reference)
    scored = same.open(REGISTRY)
    assert isinstance(scored, FaceScored) and scored.score >= 40 and scored.faces_found == 1
    assert scored.encoder == "dlib/resnet_v1" and scored.reason is None and len(scored.boxes) == 1
    (other,) = await score(nc, await blobs.put_image(face_of(4)), reference)
    assert isinstance(other.open(REGISTRY), FaceScored) and other.open(REGISTRY).score < 40


async def test_no_face_scores_zero_and_two_faces_score_the_best(service: None, nc: nats.NATS, blobs: BlobStore) -> None:
    reference = await blobs.put_image(face_of(3))
    (empty,) = await score(nc, await blobs.put_image(no_face_image()), reference)
    assert empty.open(REGISTRY) == FaceScored(chain_id=empty.open(REGISTRY).chain_id, step=0, attempt=1, score=0,
                                              faces_found=0, encoder="dlib/resnet_v1", reason=NO_FACE)
    (pair,) = await score(nc, await blobs.put_image(two_faces_image(0, 3)), reference)
    scored = pair.open(REGISTRY)
    assert scored.faces_found == 2 and scored.score >= 40
    assert sorted(box.similarity >= 40 for box in scored.boxes) == [False, True]


async def test_unreadable_missing_and_faceless_reference_fail(service: None, nc: nats.NATS, blobs: BlobStore) -> None:
    reference = await blobs.put_image(face_of(1))
    (corrupt,) = await score(nc, await put_raw(blobs, corrupt_image()), reference)
    failed = corrupt.open(REGISTRY)
    assert isinstance(failed, FaceCheckFailed) and failed.reason.startswith("unreadable image")
    absent = ImageRef(sha256="0" * 64, media_type="image/png", width=8, height=8, bytes=10)
    (missing,) = await score(nc, absent, reference)
    assert missing.open(REGISTRY).reason.startswith("cannot fetch image: no blob")
    (faceless,) = await score(nc, reference, await blobs.put_image(no_face_image()))
    assert "has no face" in faceless.open(REGISTRY).reason


async def test_a_redelivered_command_publishes_its_result_once(service: None, nc: nats.NATS, blobs: BlobStore) -> None:
    reference = await blobs.put_image(face_of(5))
    results = await score(nc, await blobs.put_image(face_of(5, size=300)), reference, times=2)
    assert len(results) == 1 and results[0].open(REGISTRY).score >= 40
