"""The facecheck service: consumes `ScoreFace`, publishes `FaceScored` or `FaceCheckFailed` on the chain's stream,
and answers reference-photo checks over request/reply (`services.facecheck.rpc`).

Handlers only fetch → score (in a worker thread) → publish. The face model is loaded in a start-up
hook, so importing this module is cheap and tests inject their own encoder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from contracts import REGISTRY
from contracts.envelope import Envelope
from contracts.face import FaceCheckFailed, FaceScored, ScoreFace
from contracts.streams import chain_stream
from contracts.subjects import COMMANDS_STREAM, command_subject
from services.facecheck import rpc
from services.facecheck.checker import FaceChecker
from services.facecheck.encoder import FaceEncoder
from services.facecheck.errors import NoReferenceFace, UnreadableImage
from services.facecheck.loading import load_encoder
from services.facecheck.scoring import Outcome
from services.facecheck.settings import FacecheckSettings
from services.runtime.blobs import BlobCorrupt, BlobNotFound, BlobStore
from services.runtime.delivery import HandlerTable
from services.runtime.ids import derived_id
from services.runtime.runner import Runtime
from services.runtime.streams import ConsumerSpec

__all__ = ["CONSUMER", "build_runtime", "result_envelope", "score_command"]

log = logging.getLogger(__name__)

CONSUMER = "facecheck"
Clock = Callable[[], datetime]


def build_runtime(
    settings: FacecheckSettings,
    *,
    encoder_factory: Callable[[FacecheckSettings], FaceEncoder] = load_encoder,
    clock: Clock = lambda: datetime.now(UTC),
) -> Runtime:
    """The facecheck process: blob store on, no database; the encoder is made by `encoder_factory` at start-up."""
    rt = Runtime(settings, database=False, relay=False, blobs=True)
    loaded: dict[str, FaceChecker] = {}

    @rt.on_startup
    async def load_models(runtime: Runtime) -> None:
        encoder = await asyncio.to_thread(encoder_factory, settings)
        loaded["checker"] = FaceChecker(encoder, cache_size=settings.face_cache_size)
        log.info("facecheck encoder %s ready", encoder.name)

    @rt.on_startup
    async def serve_reference_checks(runtime: Runtime) -> None:
        # After the model is loaded, so no request waits on it; the subscription ends with the connection.
        assert runtime.blobs is not None
        await rpc.serve(runtime.bus.nc, runtime.blobs, loaded["checker"])
        log.info("answering %s (queue group %s)", rpc.SUBJECT, rpc.QUEUE)

    table = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(ScoreFace)
    async def on_score(message: ScoreFace, envelope: Envelope) -> None:
        assert rt.blobs is not None  # blobs=True: opened before the start-up hooks run
        result = await score_command(message, rt.blobs, loaded["checker"])
        await rt.bus.publish(result_envelope(result, envelope, clock()), result)

    # One worker: scoring is CPU bound and onnxruntime/dlib already use every core for one image.
    rt.bus.consume(ConsumerSpec(CONSUMER, COMMANDS_STREAM, command_subject("face.score"),
                                ack_wait_s=settings.ack_wait_s), table)
    return rt


async def score_command(command: ScoreFace, blobs: BlobStore, checker: FaceChecker) -> FaceScored | FaceCheckFailed:
    """The event that answers one `ScoreFace`; NATS outages raise, so the command is retried."""
    ids = {"chain_id": command.chain_id, "step": command.step, "attempt": command.attempt}
    try:
        reference = await blobs.get(command.reference_image.sha256)
        image = await blobs.get(command.image.sha256)
    except (BlobNotFound, BlobCorrupt) as exc:
        # Content-addressed blobs are stored before the command is sent; a missing one will not appear later.
        return FaceCheckFailed(**ids, reason=f"cannot fetch image: {exc}")
    try:
        outcome: Outcome = await asyncio.to_thread(
            checker.score, image, reference, reference_sha256=command.reference_image.sha256)
    except NoReferenceFace as exc:
        return FaceCheckFailed(**ids, reason=str(exc))
    except UnreadableImage as exc:
        return FaceCheckFailed(**ids, reason=f"unreadable image: {exc}")
    return FaceScored(**ids, score=outcome.score, faces_found=outcome.faces_found, boxes=outcome.boxes,
                      encoder=checker.encoder.name, reason=outcome.reason)


def result_envelope(result: FaceScored | FaceCheckFailed, incoming: Envelope, now: datetime) -> Envelope:
    """The result's envelope: a redelivered command yields the same event id, so JetStream drops the double."""
    return Envelope.caused_by(result, incoming, event_id=derived_id(incoming.event_id, "face-result"),
                              stream=chain_stream(result.chain_id), occurred_at=now)
