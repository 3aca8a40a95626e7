"""The facecheck service process: consumes `ScoreFace` (`handlers`), answers reference-photo checks over
request/reply (`rpc`). The face model is loaded in a start-up hook, so importing this module is cheap
and tests inject their own encoder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from services.facecheck import rpc
from services.facecheck.checker import FaceChecker
from services.facecheck.encoder import FaceEncoder
from services.facecheck.errors import BackendUnavailable, ModelPackError
from services.facecheck.handlers import Clock, score_consumer
from services.facecheck.loading import load_encoder
from services.facecheck.settings import FacecheckSettings
from services.runtime.runner import Runtime

__all__ = ["build_runtime"]

log = logging.getLogger(__name__)


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
        try:
            encoder = await asyncio.to_thread(encoder_factory, settings)
        except (ModelPackError, BackendUnavailable) as exc:
            # An operator's fix (a setting, a file, a licence), not a crash: one line saying what, no traceback.
            log.critical("facecheck cannot start: %s", exc)
            raise SystemExit(2) from None
        loaded["checker"] = FaceChecker(encoder, cache_size=settings.face_cache_size)
        log.info("facecheck encoder %s ready", encoder.name)

    @rt.on_startup
    async def serve_reference_checks(runtime: Runtime) -> None:
        # After the model is loaded, so no request waits on it; the subscription ends with the connection.
        assert runtime.blobs is not None
        await rpc.serve(runtime.bus.nc, runtime.blobs, loaded["checker"])
        log.info("answering %s (queue group %s)", rpc.SUBJECT, rpc.QUEUE)

    rt.bus.consume(score_consumer(rt, lambda: loaded["checker"], clock, ack_wait_s=settings.ack_wait_s))
    return rt
