"""Images served from the blob store's own HTTP face: a 307 to a short-lived presigned URL (S3 only)."""

from __future__ import annotations

from fastapi.responses import RedirectResponse

from services.gateway.context import Gateway

__all__ = ["IMAGE_REDIRECT", "presigned_redirect"]

# OpenAPI: what an image route answers when the store serves the bytes itself.
IMAGE_REDIRECT = {"description": "With LIKENESS_BLOB_PRESIGNED_URLS on an S3 store: the image is at `Location`, a "
                                 "presigned URL valid LIKENESS_BLOB_URL_TTL_S seconds"}


async def presigned_redirect(gateway: Gateway, sha256: str, *, filename: str | None = None) -> RedirectResponse | None:
    """A 307 to a URL of the blob valid LIKENESS_BLOB_URL_TTL_S seconds, when LIKENESS_BLOB_PRESIGNED_URLS is on
    and the store can sign one; None means: stream the bytes. Call it only after the caller's ownership checks."""
    settings = gateway.settings
    if not settings.blob_presigned_urls:
        return None
    url = await gateway.blobs.presigned_url(sha256, settings.blob_url_ttl_s, filename=filename)
    if url is None:
        return None
    # The URL expires: neither the browser nor a proxy may keep the redirect longer than it lives.
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
