"""The handler's decisions without NATS: which event answers a `ScoreFace`, and its envelope."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest

from contracts.base import ImageRef
from contracts.face import FaceCheckFailed, FaceScored, ScoreFace
from services.facecheck.checker import FaceChecker
from services.facecheck.handlers import result_envelope, score_command
from services.runtime.blobs import BlobCorrupt, BlobNotFound
from services.runtime.ids import derived_id
from tests.factories import wrap
from tests.unit.facecheck.fakes import FakeEncoder, picture


class MemoryBlobs:
    """Just the `get` of a BlobStore, over a dict."""

    def __init__(self, *blobs: bytes) -> None:
        self.blobs = {hashlib.sha256(b).hexdigest(): b for b in blobs}

    async def get(self, sha256: str) -> bytes:
        if sha256 == "ee" * 32:
            raise BlobCorrupt(f"blob {sha256}: stored bytes hash to something else")
        try:
            return self.blobs[sha256]
        except KeyError:
            raise BlobNotFound(f"no blob {sha256}") from None


def ref(data: bytes, sha256: str | None = None) -> ImageRef:
    return ImageRef(sha256=sha256 or hashlib.sha256(data).hexdigest(), media_type="image/png", width=128,
                    height=128, bytes=len(data))


REFERENCE = picture((20, 20, 80, (200, 0, 0)))
SAME = picture((10, 10, 90, (190, 10, 0)))


def command(image: ImageRef, reference: ImageRef | None = None) -> ScoreFace:
    return ScoreFace(chain_id=uuid.uuid4(), step=1, attempt=2, image=image, reference_image=reference or ref(REFERENCE),
                     character_id="luna")


async def test_a_readable_image_is_scored_with_the_encoder_named() -> None:
    result = await score_command(command(ref(SAME)), MemoryBlobs(REFERENCE, SAME), FaceChecker(FakeEncoder()))
    assert isinstance(result, FaceScored)
    assert result.score > 99 and result.faces_found == 1 and result.encoder == "fake/colours"
    assert (result.step, result.attempt) == (1, 2)


@pytest.mark.parametrize(("image", "stored", "reason"), [
    (b"garbage!", [b"garbage!"], "unreadable image: not a PNG, JPEG or WebP image"),
    (SAME, [], "cannot fetch image: no blob"),
])
async def test_unreadable_or_missing_images_fail_with_the_reason(image: bytes, stored: list, reason: str) -> None:
    message = command(ref(image))
    result = await score_command(message, MemoryBlobs(REFERENCE, *stored), FaceChecker(FakeEncoder()))
    assert isinstance(result, FaceCheckFailed) and result.reason.startswith(reason)
    assert result.chain_id == message.chain_id


async def test_a_corrupt_blob_or_a_faceless_reference_fail_with_the_reason() -> None:
    corrupt = await score_command(command(ref(SAME, "ee" * 32)), MemoryBlobs(REFERENCE), FaceChecker(FakeEncoder()))
    assert isinstance(corrupt, FaceCheckFailed) and "hash" in corrupt.reason
    blank = picture()
    faceless = await score_command(command(ref(SAME), ref(blank)), MemoryBlobs(blank, SAME), FaceChecker(FakeEncoder()))
    assert isinstance(faceless, FaceCheckFailed) and "has no face" in faceless.reason


def test_the_result_envelope_derives_from_the_command() -> None:
    message = command(ref(SAME))
    incoming = wrap(message, f"chain-{message.chain_id}")
    result = FaceScored(chain_id=message.chain_id, step=1, attempt=2, score=50, faces_found=1, encoder="fake/colours")
    now = datetime(2030, 1, 2, tzinfo=UTC)
    envelope = result_envelope(result, incoming, now)
    assert envelope.event_id == derived_id(incoming.event_id, "face-result")
    assert envelope.event_id == result_envelope(result, incoming, now).event_id  # a redelivery makes the same id
    assert envelope.stream == f"chain-{message.chain_id}" and envelope.type == "face.scored"
    assert envelope.causation_id == str(incoming.event_id)
    assert (envelope.correlation_id, envelope.actor, envelope.occurred_at) == (incoming.correlation_id, "tests", now)
