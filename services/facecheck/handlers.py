"""The facecheck consumer: `ScoreFace` in, `FaceScored` or `FaceCheckFailed` out on the chain's stream.

The handler only fetches the two images, scores them (in a worker thread) and publishes the result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import numpy as np

from contracts.envelope import Envelope
from contracts.face import FaceCheckFailed, FaceScored, ScoreFace
from contracts.streams import chain_stream
from contracts.subjects import COMMANDS_STREAM, command_subject
from services.facecheck.checker import FaceChecker
from services.facecheck.metrics import record_check
from services.facecheck.previous import cached_previous, score_with_previous
from services.facecheck.errors import NoReferenceFace, UnreadableImage
from services.runtime import tracing
from services.runtime.blobs import BlobCorrupt, BlobNotFound, BlobStore
from services.runtime.consumers import Consumer
from services.runtime.ids import derived_id
from services.runtime.runner import Runtime
from services.runtime.streams import ConsumerSpec

__all__ = ["CONSUMER", "Clock", "result_envelope", "score_command", "score_consumer"]

CONSUMER = "facecheck"
Clock = Callable[[], datetime]


def score_consumer(runtime: Runtime, checker: Callable[[], FaceChecker], clock: Clock, *,
                   ack_wait_s: float) -> Consumer:
    """`checker()`: the checker the start-up hook loaded."""
    # One worker: scoring is CPU bound and onnxruntime/dlib already use every core for one image.
    consumer = Consumer(ConsumerSpec(CONSUMER, COMMANDS_STREAM, command_subject("face.score"), ack_wait_s=ack_wait_s))

    @consumer.on(ScoreFace)
    async def on_score(message: ScoreFace, envelope: Envelope) -> None:
        assert runtime.blobs is not None  # blobs=True: opened before the start-up hooks run
        result = await score_command(message, runtime.blobs, checker())
        await runtime.bus.publish(result_envelope(result, envelope, clock()), result)

    return consumer


async def score_command(command: ScoreFace, blobs: BlobStore, checker: FaceChecker) -> FaceScored | FaceCheckFailed:
    """The event that answers one `ScoreFace`; NATS outages raise, so the command is retried."""
    ids = {"chain_id": command.chain_id, "step": command.step, "attempt": command.attempt}
    try:
        # A reference seen before is its cached embedding: its picture is not fetched again for every attempt.
        reference = checker.cached_reference(command.reference_image.sha256)
        if reference is None:
            reference = await blobs.get(command.reference_image.sha256)
        image = await blobs.get(command.image.sha256)
    except (BlobNotFound, BlobCorrupt) as exc:
        # Content-addressed blobs are stored before the command is sent; a missing one will not appear later.
        record_check("failed")
        return FaceCheckFailed(**ids, reason=f"cannot fetch image: {exc}")
    previous = await _previous(blobs, command, checker)
    began = time.monotonic()
    try:
        with tracing.span("face score", attributes={"likeness.encoder": checker.encoder.name,
                                                    "likeness.step": command.step, "likeness.attempt": command.attempt}):
            previous_score: float | None = None
            if previous is not None and command.previous_image is not None:
                outcome, previous_score = await asyncio.to_thread(
                    score_with_previous, checker, image, reference, previous,
                    reference_sha256=command.reference_image.sha256, previous_sha256=command.previous_image.sha256)
            else:
                outcome = await asyncio.to_thread(
                    checker.score, image, reference, reference_sha256=command.reference_image.sha256)
    except NoReferenceFace as exc:
        record_check("failed")
        return FaceCheckFailed(**ids, reason=str(exc))
    except UnreadableImage as exc:
        record_check("failed")
        return FaceCheckFailed(**ids, reason=f"unreadable image: {exc}")
    record_check("scored" if outcome.faces_found else "no_face", checker.encoder.name, time.monotonic() - began)
    return FaceScored(**ids, score=outcome.score, faces_found=outcome.faces_found, boxes=outcome.boxes,
                      encoder=checker.encoder.name, reason=outcome.reason, previous_score=previous_score)


async def _previous(blobs: BlobStore, command: ScoreFace, checker: FaceChecker) -> bytes | np.ndarray | None:
    """The picture the attempt edited, or its face's embedding when an earlier attempt of the step made it
    (then it is not fetched again); without either the attempt is still scored, only its drift goes unmeasured."""
    if command.previous_image is None:
        return None
    embedded = cached_previous(checker, reference_sha256=command.reference_image.sha256,
                               previous_sha256=command.previous_image.sha256)
    if embedded is not None:
        return embedded
    try:
        return await blobs.get(command.previous_image.sha256)
    except (BlobNotFound, BlobCorrupt):
        return None


def result_envelope(result: FaceScored | FaceCheckFailed, incoming: Envelope, now: datetime) -> Envelope:
    """The result's envelope: a redelivered command yields the same event id, so JetStream drops the double."""
    return Envelope.caused_by(result, incoming, event_id=derived_id(incoming.event_id, "face-result"),
                              stream=chain_stream(result.chain_id), occurred_at=now)
