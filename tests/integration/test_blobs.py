"""The blob store's contract, run against both backends: a real NATS JetStream Object Store, and a real
S3-compatible HTTP server (moto's, started by the test)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from PIL import Image

from services.runtime.blobs import (
    BUCKET,
    BlobCorrupt,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    NotAnImage,
)
from services.runtime.settings import RuntimeSettings
from tests.fakes.s3_server import MotoS3, moto_s3

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=1)
    yield nc.jetstream(timeout=5)
    await nc.drain()


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


class NatsSide:
    """A fresh JetStream object store bucket, and what a test does behind the store's back there."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js, self.bucket = js, f"test-{uuid.uuid4().hex[:12]}"

    async def open(self, max_bytes: int | None = None) -> BlobStore:
        return await BlobStore.open(self.js, bucket=self.bucket, max_bytes=max_bytes)

    async def count(self) -> int:
        try:
            return len(await (await self.js.object_store(self.bucket)).list(ignore_deletes=True))
        except NotFoundError:  # nats-py's list() raises on an empty bucket
            return 0

    async def overwrite(self, name: str, data: bytes) -> None:
        # Written straight to the object store, so NATS's own digest matches but the name does not.
        await (await self.js.object_store(self.bucket)).put(name, data)

    async def mark(self, name: str) -> str:
        """A token of the stored upload; `upload_of` answers it until the object is uploaded again."""
        return await self.upload_of(name)

    async def upload_of(self, name: str) -> str:
        return (await (await self.js.object_store(self.bucket)).get_info(name)).nuid

    async def close(self) -> None:
        try:
            await self.js.delete_object_store(self.bucket)
        except NotFoundError:
            pass


class S3Side:
    """A fresh bucket on moto's S3 server, and what a test does behind the store's back there (with boto3)."""

    def __init__(self, s3: MotoS3) -> None:
        self.s3, self.bucket = s3, s3.new_bucket()
        self.stores: list[BlobStore] = []

    async def open(self, max_bytes: int | None = None) -> BlobStore:
        settings = RuntimeSettings(**self.s3.settings(self.bucket))
        store = await BlobStore.open(None, max_bytes=max_bytes, settings=settings)
        self.stores.append(store)
        return store

    async def count(self) -> int:
        return (await asyncio.to_thread(self.s3.client.list_objects_v2, Bucket=self.bucket))["KeyCount"]

    async def overwrite(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self.s3.client.put_object, Bucket=self.bucket, Key=name, Body=data)

    async def mark(self, name: str) -> str:
        token = uuid.uuid4().hex
        await asyncio.to_thread(self.s3.client.copy_object, Bucket=self.bucket, Key=name, MetadataDirective="REPLACE",
                                CopySource={"Bucket": self.bucket, "Key": name},
                                Metadata={"sha256": name, "mark": token})
        return token

    async def upload_of(self, name: str) -> str:
        head = await asyncio.to_thread(self.s3.client.head_object, Bucket=self.bucket, Key=name)
        return head["Metadata"].get("mark", "")

    async def close(self) -> None:
        for store in self.stores:
            await store.close()


@pytest.fixture(params=["nats", "s3"])
async def side(request: pytest.FixtureRequest, js: JetStreamContext) -> AsyncIterator[NatsSide | S3Side]:
    chosen = NatsSide(js) if request.param == "nats" else S3Side(request.getfixturevalue("s3"))
    yield chosen
    await chosen.close()


@pytest.fixture
async def blobs(side: NatsSide | S3Side) -> BlobStore:
    return await side.open()


def noise_image(width: int, height: int, fmt: str = "PNG") -> bytes:
    """Random pixels, so PNG cannot compress them and the file is about width*height*3 bytes."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, fmt)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Tests ---


async def test_large_png_round_trips(blobs: BlobStore) -> None:
    data = noise_image(1400, 1300)
    assert len(data) >= 5 * MiB

    ref = await blobs.put_image(data)

    assert (ref.sha256, ref.media_type, ref.width, ref.height, ref.bytes) == (
        sha(data), "image/png", 1400, 1300, len(data))
    assert await blobs.exists(ref.sha256)
    assert await blobs.get(ref.sha256) == data


@pytest.mark.parametrize(("fmt", "media_type"), [("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
async def test_jpeg_and_webp_are_identified(blobs: BlobStore, fmt: str, media_type: str) -> None:
    data = noise_image(64, 48, fmt)
    ref = await blobs.put_image(data)
    assert (ref.media_type, ref.width, ref.height) == (media_type, 64, 48)
    assert await blobs.get(ref.sha256) == data


async def test_same_image_twice_is_stored_once(side: NatsSide | S3Side, blobs: BlobStore) -> None:
    data = noise_image(300, 200)
    first = await blobs.put_image(data)
    upload = await side.mark(first.sha256)
    second = await blobs.put_image(data)
    assert first == second
    assert await side.count() == 1
    assert await side.upload_of(first.sha256) == upload  # the second put uploaded nothing


async def test_over_the_limit_is_refused_and_nothing_stored(side: NatsSide | S3Side) -> None:
    small = await side.open(max_bytes=1 * MiB)
    data = noise_image(850, 850)
    assert len(data) >= 2 * 10**6

    with pytest.raises(BlobTooLarge) as caught:
        await small.put_image(data)

    assert str(len(data)) in str(caught.value) and str(1 * MiB) in str(caught.value)
    assert not await small.exists(sha(data))
    assert await side.count() == 0


async def test_size_is_checked_before_anything_else(side: NatsSide | S3Side) -> None:
    small = await side.open(max_bytes=1024)
    with pytest.raises(BlobTooLarge):
        await small.put_image(b"\x00" * 2048)  # not an image either: the size check comes first
    with pytest.raises(BlobTooLarge):
        await small.put_bytes(b"\x00" * 2048, "application/octet-stream")


async def test_non_image_bytes_are_refused(blobs: BlobStore) -> None:
    with pytest.raises(NotAnImage):
        await blobs.put_image(b"definitely not a picture" * 100)


async def test_truncated_png_is_refused(blobs: BlobStore) -> None:
    data = noise_image(64, 64)
    with pytest.raises(NotAnImage):
        await blobs.put_image(data[: len(data) // 2])


async def test_gif_is_refused(side: NatsSide | S3Side, blobs: BlobStore) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, "GIF")
    with pytest.raises(NotAnImage):
        await blobs.put_image(buf.getvalue())
    assert await side.count() == 0


@pytest.mark.parametrize("edge", [40, 100])  # 1600 pixels: Pillow warns; 10000 (over twice the limit): it raises
async def test_decompression_bomb_is_refused(blobs: BlobStore, monkeypatch: pytest.MonkeyPatch, edge: int) -> None:
    data = noise_image(edge, edge)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(NotAnImage, match="decompression bomb"):
        await blobs.put_image(data)


async def test_unknown_sha_is_not_found(blobs: BlobStore) -> None:
    missing = sha(b"never stored")
    assert not await blobs.exists(missing)
    with pytest.raises(BlobNotFound):
        await blobs.get(missing)


async def test_malformed_name_is_a_value_error(blobs: BlobStore) -> None:
    with pytest.raises(ValueError):
        await blobs.get("../etc/passwd")


async def test_corrupt_object_is_detected(side: NatsSide | S3Side, blobs: BlobStore) -> None:
    name = sha(b"the real bytes")
    await side.overwrite(name, b"some other bytes")
    with pytest.raises(BlobCorrupt):
        await blobs.get(name)


async def test_a_stored_image_overwritten_behind_the_stores_back_is_never_handed_out(side: NatsSide | S3Side,
                                                                                   blobs: BlobStore) -> None:
    ref = await blobs.put_image(noise_image(32, 32))
    await side.overwrite(ref.sha256, noise_image(32, 32))
    with pytest.raises(BlobCorrupt):
        await blobs.get(ref.sha256)


async def test_a_blob_over_the_readers_limit_is_refused_on_read(side: NatsSide | S3Side, blobs: BlobStore) -> None:
    data = noise_image(400, 400)
    ref = await blobs.put_image(data)
    reader = await side.open(max_bytes=len(data) - 1)  # a replica whose limit was lowered since
    with pytest.raises(BlobTooLarge, match=str(len(data))):
        await reader.get(ref.sha256)
    assert await (await side.open(max_bytes=len(data))).get(ref.sha256) == data


async def test_put_bytes_and_delete(blobs: BlobStore) -> None:
    data = b'{"not": "an image"}'
    name = await blobs.put_bytes(data, "application/json")
    assert name == sha(data)
    assert await blobs.get(name) == data
    assert await blobs.delete(name) is True
    assert not await blobs.exists(name)
    assert await blobs.delete(name) is False
    with pytest.raises(BlobNotFound):
        await blobs.get(name)


async def test_open_is_idempotent_on_the_default_bucket(js: JetStreamContext) -> None:
    first = await BlobStore.open(js)
    data = noise_image(32, 32)
    ref = await first.put_image(data)
    second = await BlobStore.open(js)  # binds to the existing bucket instead of failing
    assert await second.get(ref.sha256) == data
    await js.delete_object_store(BUCKET)


async def test_the_nats_store_signs_no_urls(js: JetStreamContext) -> None:
    side = NatsSide(js)
    try:
        store = await side.open()
        ref = await store.put_image(noise_image(16, 16))
        assert await store.presigned_url(ref.sha256, 60) is None  # the gateway streams the bytes instead
    finally:
        await side.close()
