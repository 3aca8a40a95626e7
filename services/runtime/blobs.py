"""Content-addressed blob store on the JetStream Object Store: images never ride the bus, messages carry `ImageRef`.

An object's name is the hex sha256 of its bytes, so storing the same bytes twice stores them once.

    BlobError
    ├── BlobTooLarge   over the size limit (the message says the size and the limit)
    ├── BlobNotFound   no object under that sha256
    ├── NotAnImage     bytes Pillow cannot identify, a decompression bomb, or a format other than PNG/JPEG/WebP
    └── BlobCorrupt    stored bytes whose sha256 does not match their name
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import warnings

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, DigestMismatchError, ObjectNotFoundError
from nats.js.object_store import ObjectStore
from PIL import Image

from contracts.base import ImageRef
from services.runtime.settings import RuntimeSettings

__all__ = ["BUCKET", "BlobCorrupt", "BlobError", "BlobNotFound", "BlobStore", "BlobTooLarge", "NotAnImage"]

BUCKET = "likeness-blobs"
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# Moving tens of megabytes in 128 KiB chunks takes longer than one request/reply round trip.
TRANSFER_TIMEOUT_FACTOR = 6
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """Base of every blob store error."""


class BlobTooLarge(BlobError):
    """The blob is over the store's size limit."""


class BlobNotFound(BlobError):
    """No blob is stored under that sha256."""


class NotAnImage(BlobError):
    """The bytes are not a PNG, JPEG or WebP image Pillow can read safely."""


class BlobCorrupt(BlobError):
    """The stored bytes do not hash to their name."""


class BlobStore:
    """One bucket of content-addressed blobs; build it with `BlobStore.open`."""

    def __init__(self, objects: ObjectStore, *, max_bytes: int, timeout_s: float) -> None:
        self._objects = objects
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.transfer_timeout_s = timeout_s * TRANSFER_TIMEOUT_FACTOR

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        bucket: str = BUCKET,
        max_bytes: int | None = None,
        settings: RuntimeSettings | None = None,
    ) -> BlobStore:
        """Bind to `bucket`, creating it if missing."""
        settings = settings or RuntimeSettings()
        timeout = settings.nats_timeout_s
        try:
            objects = await asyncio.wait_for(js.object_store(bucket), timeout)
        except BucketNotFoundError:
            # Adding a stream with the same config is idempotent on the server, so a race with another creator is fine.
            objects = await asyncio.wait_for(js.create_object_store(bucket), timeout)
        return cls(objects, max_bytes=max_bytes or settings.blob_max_bytes, timeout_s=timeout)

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
        sink = io.BytesIO()  # writeinto avoids nats-py re-concatenating the whole result per chunk
        try:
            await asyncio.wait_for(self._objects.get(sha256, writeinto=sink), timeout or self.transfer_timeout_s)
        except ObjectNotFoundError:
            raise BlobNotFound(f"no blob {sha256}") from None
        except DigestMismatchError:
            raise BlobCorrupt(f"blob {sha256}: chunks do not match the digest NATS stored") from None
        data = sink.getvalue()
        actual = await asyncio.to_thread(_sha256, data)
        if actual != sha256:
            raise BlobCorrupt(f"blob {sha256}: stored bytes hash to {actual}")
        return data

    async def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under `sha256`."""
        _check_name(sha256)
        try:
            await asyncio.wait_for(self._objects.get_info(sha256), self.timeout_s)
        except ObjectNotFoundError:
            return False
        return True

    async def delete(self, sha256: str) -> bool:
        """Delete the blob; False if there was none (so a retried delete is harmless)."""
        _check_name(sha256)
        try:
            await asyncio.wait_for(self._objects.delete(sha256), self.timeout_s)
        except ObjectNotFoundError:
            return False
        return True

    def _check_size(self, data: bytes) -> None:
        # Before hashing or decoding: an oversized upload must cost nothing.
        if len(data) > self.max_bytes:
            raise BlobTooLarge(f"blob of {len(data)} bytes is over the limit of {self.max_bytes} bytes")

    async def _store(self, data: bytes, media_type: str, timeout: float | None) -> str:
        sha = await asyncio.to_thread(_sha256, data)  # hashlib releases the GIL; tens of MB would stall the loop
        if await self.exists(sha):
            return sha
        # Header values are lists, as Go's nats.Header, so the `nats` CLI and other clients read them too.
        meta = api.ObjectMeta(name=sha, headers={"Content-Type": [media_type]})
        await asyncio.wait_for(self._objects.put(sha, data, meta=meta), timeout or self.transfer_timeout_s)
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
