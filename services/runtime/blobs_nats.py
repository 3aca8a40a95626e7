"""The blob store's default backend: the JetStream Object Store (one object per blob, named by its sha256)."""

from __future__ import annotations

import asyncio
import io

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, DigestMismatchError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from services.runtime.blob_backend import BlobCorrupt, BlobNotFound, BlobTooLarge
from services.runtime.streams import ensure_replicas

__all__ = ["NatsBackend"]


class NatsBackend:
    """Blobs as objects of one JetStream Object Store bucket; build it with `NatsBackend.open`."""

    def __init__(self, objects: ObjectStore) -> None:
        self._objects = objects

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, *, replicas: int, timeout_s: float) -> NatsBackend:
        """Bind to `bucket`, creating it if missing."""
        try:
            objects = await asyncio.wait_for(js.object_store(bucket), timeout_s)
            # A bucket made before the cluster grew: its copies follow the setting, like the streams'.
            await asyncio.wait_for(ensure_replicas(js, f"OBJ_{bucket}", replicas), timeout_s)
        except BucketNotFoundError:
            # Adding a stream with the same config is idempotent on the server, so a race with another creator is fine.
            config = api.ObjectStoreConfig(bucket=bucket, replicas=replicas)
            objects = await asyncio.wait_for(js.create_object_store(bucket, config=config), timeout_s)
        return cls(objects)

    async def exists(self, name: str) -> bool:
        try:
            await self._objects.get_info(name)
        except ObjectNotFoundError:
            return False
        return True

    async def put(self, name: str, data: bytes, media_type: str) -> None:
        # Header values are lists, as Go's nats.Header, so the `nats` CLI and other clients read them too.
        meta = api.ObjectMeta(name=name, headers={"Content-Type": [media_type]})
        await self._objects.put(name, data, meta=meta)

    async def read(self, name: str, max_bytes: int) -> bytes:
        try:
            # The size first, so an object over the limit is never loaded.
            info = await self._objects.get_info(name)
            if (info.size or 0) > max_bytes:
                raise BlobTooLarge(f"blob {name} of {info.size} bytes is over the limit of {max_bytes} bytes")
            sink = io.BytesIO()  # writeinto avoids nats-py re-concatenating the whole result per chunk
            await self._objects.get(name, writeinto=sink)
        except ObjectNotFoundError:
            raise BlobNotFound(f"no blob {name}") from None
        except DigestMismatchError:
            raise BlobCorrupt(f"blob {name}: chunks do not match the digest NATS stored") from None
        return sink.getvalue()

    async def delete(self, name: str) -> bool:
        try:
            await self._objects.delete(name)
        except ObjectNotFoundError:
            return False
        return True

    async def url(self, name: str, ttl_s: int, filename: str | None) -> str | None:
        return None  # NATS has no HTTP face: the gateway streams the bytes itself

    async def close(self) -> None:
        return None  # the connection is the runtime's bus, closed by its owner
