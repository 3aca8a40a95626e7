"""GET /asyncapi.json: the bus's AsyncAPI document (contracts.asyncapi), for whoever talks to NATS directly."""

from __future__ import annotations

import asyncio
import functools
import json

from fastapi import APIRouter
from fastapi.responses import Response

from contracts.asyncapi import asyncapi_document

__all__ = ["router"]

router = APIRouter()


@functools.cache
def _document() -> bytes:
    # Built from the contracts alone, so it never changes while the process runs: once is enough.
    return json.dumps(asyncapi_document(), separators=(",", ":")).encode()


# Like /openapi.json, the document is not an operation of the API it describes.
@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi() -> Response:
    # The first build takes a fifth of a second: off the event loop, which serves live streams meanwhile.
    return Response(await asyncio.to_thread(_document), media_type="application/json",
                    headers={"Cache-Control": "public, max-age=300"})
