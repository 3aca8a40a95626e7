"""The blob store's errors and the `BlobBackend` protocol its storage backends (NATS, S3) implement.

    BlobError
    ├── BlobTooLarge     over the size limit (the message says the size and the limit)
    ├── BlobNotFound     no object under that sha256
    ├── NotAnImage       bytes Pillow cannot identify, a decompression bomb, or a format other than PNG/JPEG/WebP
    ├── BlobCorrupt      stored bytes whose sha256 does not match their name
    └── BlobUnavailable  the backing store cannot be used: bucket missing, access refused, unreachable
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "BlobBackend",
    "BlobCorrupt",
    "BlobError",
    "BlobNotFound",
    "BlobTooLarge",
    "BlobUnavailable",
    "NotAnImage",
]


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


class BlobUnavailable(BlobError):
    """The backing store cannot be used; the message says what the operator should do."""


class BlobBackend(Protocol):
    """Where a `BlobStore` keeps its bytes, by name (the hex sha256); the store checks names, sizes and hashes.

    Backends raise BlobNotFound for a missing object and may raise BlobTooLarge / BlobCorrupt when their
    own metadata already tells; timeouts are the caller's (`asyncio.wait_for` around each call).
    """

    async def exists(self, name: str) -> bool: ...

    async def put(self, name: str, data: bytes, media_type: str) -> None: ...

    async def read(self, name: str, max_bytes: int) -> bytes: ...

    async def delete(self, name: str) -> bool: ...

    async def url(self, name: str, ttl_s: int, filename: str | None) -> str | None:
        """A URL a browser can GET the bytes from for `ttl_s` seconds, or None where the backend cannot sign one."""
        ...

    async def close(self) -> None: ...
