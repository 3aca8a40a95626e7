"""Request/reply face checks for other services: can this stored image be a character's reference photo?

The gateway asks on core NATS `likeness.rpc.face.check_reference` (queue group "facecheck", so the
replicas share the requests) instead of loading face models itself. The image is already in the blob
store; the request names it:

    request  {"sha256": "<64 hex>"}
    reply    {"ok": bool, "faces_found": int, "reason": str | null,
              "box": {"x", "y", "width", "height", "det_score"} | null}

Every request gets a reply: a bad request, a missing blob or an unreadable image is `ok: false` with a
reason, and nothing a request carries can stop the subscription.
"""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from contracts.face import ReferenceCheckReply, ReferenceCheckRequest
from contracts.subjects import rpc_subject
from services.facecheck.checker import FaceChecker
from services.runtime.blobs import BlobCorrupt, BlobNotFound, BlobStore

__all__ = ["QUEUE", "SUBJECT", "ReferenceCheckReply", "ReferenceCheckRequest", "check_reference", "serve"]

log = logging.getLogger(__name__)

SUBJECT = rpc_subject("face.check_reference")
QUEUE = "facecheck"



async def check_reference(body: bytes, blobs: BlobStore, checker: FaceChecker) -> ReferenceCheckReply:
    """The reply to one request body; never raises."""
    try:
        request = ReferenceCheckRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "body"
        return ReferenceCheckReply(ok=False, reason=f"bad request: {where}: {first['msg']} "
                                                    '(send {"sha256": "<64 lowercase hex>"})')
    try:
        data = await blobs.get(request.sha256)
    except BlobNotFound:
        return ReferenceCheckReply(ok=False,
                                   reason=f"no image is stored under sha256 {request.sha256}; upload it first")
    except BlobCorrupt as exc:
        return ReferenceCheckReply(ok=False, reason=f"the stored image is damaged: {exc}")
    except (TimeoutError, nats.errors.Error) as exc:
        return ReferenceCheckReply(ok=False, reason=f"blob store unavailable, try again: {type(exc).__name__}: {exc}")
    try:
        check = await asyncio.to_thread(checker.validate_reference, data)
    except Exception as exc:  # noqa: BLE001 - a reply that says what broke beats a caller left to time out
        log.exception("reference check of %s failed", request.sha256)
        return ReferenceCheckReply(ok=False, reason=f"face check failed: {type(exc).__name__}: {exc}")
    return ReferenceCheckReply(ok=check.ok, faces_found=check.faces_found, reason=check.reason, box=check.face)


async def serve(nc: nats.NATS, blobs: BlobStore, checker: FaceChecker) -> Subscription:
    """Answer reference checks on `SUBJECT` in queue group `QUEUE` until the connection closes.

    Requests are answered one at a time per replica: each is CPU bound on the same face model, and
    the queue group spreads the load over replicas.
    """

    async def on_request(msg: Msg) -> None:
        reply = await check_reference(msg.data, blobs, checker)
        if not msg.reply:
            return
        try:
            await msg.respond(reply.to_bytes())
        except Exception as exc:  # noqa: BLE001 - the asker left or the connection dropped; the next request is fine
            log.warning("reference check reply not sent: %s", exc)

    return await nc.subscribe(SUBJECT, queue=QUEUE, cb=on_request)
