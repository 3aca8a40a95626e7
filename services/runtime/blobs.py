"""Content-addressed blob store: images never ride the bus, messages carry `ImageRef`.

An object's name is the hex sha256 of its bytes, so storing the same bytes twice stores them once. The bytes
live in a backend chosen by settings (`LIKENESS_BLOB_STORE`): the JetStream Object Store (default,
services.runtime.blobs_nats) or an S3-compatible bucket (services.runtime.blobs_s3). The checks are the
store's, the same for both: size limit before upload and on read, image sniffing, sha256 of every read.
Its errors (BlobError and the five below it) are defined, with their tree, in services.runtime.blob_backend
and re-exported here.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import warnings

from nats.js import JetStreamContext
from PIL import Image

from contracts.base import ImageRef
from services.runtime.blob_backend import (
    BlobBackend,
    BlobCorrupt,
    BlobError,
    BlobNotFound,
    BlobTooLarge,
    BlobUnavailable,
    NotAnImage,
)
from services.runtime.blobs_nats import NatsBackend
from services.runtime.settings import RuntimeSettings

__all__ = [
    "BUCKET",
    "BlobCorrupt",
    "BlobError",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "BlobUnavailable",
    "NotAnImage",
]

BUCKET = "likeness-blobs"
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# Moving tens of megabytes takes longer than one request/reply round trip.
TRANSFER_TIMEOUT_FACTOR = 6
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    """One bucket of content-addressed blobs; build it with `BlobStore.open` and `close` it at shutdown."""

    def __init__(self, backend: BlobBackend, *, max_bytes: int, timeout_s: float) -> None:
        self._backend = backend
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.transfer_timeout_s = timeout_s * TRANSFER_TIMEOUT_FACTOR

    @classmethod
    async def open(
        cls,
        js: JetStreamContext | None,
        *,
        bucket: str | None = None,
        max_bytes: int | None = None,
        settings: RuntimeSettings | None = None,
    ) -> BlobStore:
        """The store the settings choose: NATS bucket `bucket` on `js` (created if missing), or the S3 bucket
        (checked: BlobUnavailable says what to do when it is missing or refuses us)."""
        settings = settings or RuntimeSettings()
        max_bytes = max_bytes or settings.blob_max_bytes
        if settings.blob_store == "s3":
            from services.runtime.blobs_s3 import S3Backend  # botocore's import is heavy: only where S3 is used

            timeout = settings.s3_connect_timeout_s + settings.s3_read_timeout_s
            backend: BlobBackend = await S3Backend.open(settings, bucket=bucket, timeout_s=timeout)
            return cls(backend, max_bytes=max_bytes, timeout_s=timeout)
        if js is None:
            raise ValueError("the NATS blob store needs a JetStream context")
        timeout = settings.nats_timeout_s
        backend = await NatsBackend.open(js, bucket or BUCKET, replicas=settings.stream_replicas, timeout_s=timeout)
        return cls(backend, max_bytes=max_bytes, timeout_s=timeout)

    async def close(self) -> None:
        """Release the backend's connections (the S3 client); the NATS backend's belong to the bus."""
        await self._backend.close()

    async def put_image(self, data: bytes, *, timeout: float | None = None) -> ImageRef:
        """Store a PNG/JPEG/WebP image and return its reference."""
        self._check_size(data)
        media_type, width, height = _identify(data)
        sha = await self._store(data, media_type, timeout)
        return ImageRef(sha256=sha, media_type=media_type, width=width, height=height, bytes=len(data))

    async def put_bytes(self, data: bytes, media_type: str, *, timeout: float | None = None) -> str:
        """Store any blob and return its sha256."""
        self._check_size(data)
        return await self._store(data, media_type, timeout)

    async def get(self, sha256: str, *, timeout: float | None = None) -> bytes:
        """The bytes stored under `sha256`, checked against it."""
        _check_name(sha256)
        data = await asyncio.wait_for(self._backend.read(sha256, self.max_bytes), timeout or self.transfer_timeout_s)
        actual = await asyncio.to_thread(_sha256, data)
        if actual != sha256:
            raise BlobCorrupt(f"blob {sha256}: stored bytes hash to {actual}")
        return data

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under `sha256`."""
        _check_name(sha256)
        return await asyncio.wait_for(self._backend.exists(sha256), self.timeout_s)

    async def delete(self, sha256: str) -> bool:
        """Delete the blob; False if there was none (so a retried delete is harmless)."""
        _check_name(sha256)
        return await asyncio.wait_for(self._backend.delete(sha256), self.timeout_s)

    async def presigned_url(self, sha256: str, ttl_s: int, *, filename: str | None = None) -> str | None:
        """A URL that serves the blob for `ttl_s` seconds without us (S3), or None where the backend has none
        (NATS: stream the bytes instead). `filename` asks the server for an attachment of that name."""
        _check_name(sha256)
        if ttl_s <= 0:
            raise ValueError(f"a presigned URL lives a positive number of seconds, not {ttl_s}")
        return await asyncio.wait_for(self._backend.url(sha256, ttl_s, filename), self.timeout_s)

    def _check_size(self, data: bytes) -> None:
        # Before hashing or decoding: an oversized upload must cost nothing.
        if len(data) > self.max_bytes:
            raise BlobTooLarge(f"blob of {len(data)} bytes is over the limit of {self.max_bytes} bytes")

    async def _store(self, data: bytes, media_type: str, timeout: float | None) -> str:
        sha = await asyncio.to_thread(_sha256, data)  # hashlib releases the GIL; tens of MB would stall the loop
        # Writers of the same name write the same bytes, so a race between two first puts is harmless.
        if await self.exists(sha):
            return sha
        await asyncio.wait_for(self._backend.put(sha, data, media_type), timeout or self.transfer_timeout_s)
        return sha


def _identify(data: bytes) -> tuple[str, int, int]:
    """(media type, width, height) of an allowed image, else NotAnImage."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; both are bombs to us.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # `formats` keeps Pillow's other, less hardened decoders away from untrusted bytes.
            with Image.open(io.BytesIO(data), formats=list(MEDIA_TYPES)) as image:
                fmt, (width, height) = image.format, image.size
                image.verify()  # walks the file (PNG chunk CRCs), so truncated or damaged files are refused
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NotAnImage(f"refused as a decompression bomb: {exc}") from None
    except Image.UnidentifiedImageError:
        raise NotAnImage("not a PNG, JPEG or WebP image") from None
    except Exception as exc:  # Pillow's decoders raise many types (SyntaxError, OSError, struct.error...)
        raise NotAnImage(f"damaged image: {type(exc).__name__}: {exc}") from None
    if fmt not in MEDIA_TYPES or width <= 0 or height <= 0:
        raise NotAnImage(f"unsupported image: format {fmt}, {width}x{height}")
    return MEDIA_TYPES[fmt], width, height


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(sha256: str) -> None:
    # A malformed name is a caller's bug (ImageRef already validates), not a missing blob.
    if not _SHA256.match(sha256):
        raise ValueError(f"not a hex sha256: {sha256!r}")
