"""The blob store against a real NATS JetStream Object Store."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator

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

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=1)
    yield nc.jetstream(timeout=5)
    await nc.drain()




@pytest.fixture
async def bucket(js: JetStreamContext) -> AsyncIterator[str]:
    """A fresh bucket per test, so object counts are the test's own."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        await js.delete_object_store(name)
    except NotFoundError:
        pass


@pytest.fixture
async def blobs(js: JetStreamContext, bucket: str) -> BlobStore:
    return await BlobStore.open(js, bucket=bucket)


async def object_count(js: JetStreamContext, bucket: str) -> int:
    try:
        return len(await (await js.object_store(bucket)).list(ignore_deletes=True))
    except NotFoundError:  # nats-py's list() raises on an empty bucket
        return 0


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


async def test_same_image_twice_is_stored_once(js: JetStreamContext, bucket: str, blobs: BlobStore) -> None:
    data = noise_image(300, 200)
    objects = await js.object_store(bucket)
    first = await blobs.put_image(data)
    upload = (await objects.get_info(first.sha256)).nuid
    second = await blobs.put_image(data)
    assert first == second
    assert await object_count(js, bucket) == 1
    assert (await objects.get_info(first.sha256)).nuid == upload  # the second put uploaded nothing


async def test_over_the_limit_is_refused_and_nothing_stored(js: JetStreamContext, bucket: str) -> None:
    small = await BlobStore.open(js, bucket=bucket, max_bytes=1 * MiB)
    data = noise_image(850, 850)
    assert len(data) >= 2 * 10**6

    with pytest.raises(BlobTooLarge) as caught:
        await small.put_image(data)

    assert str(len(data)) in str(caught.value) and str(1 * MiB) in str(caught.value)
    assert not await small.exists(sha(data))
    assert await object_count(js, bucket) == 0


async def test_size_is_checked_before_anything_else(js: JetStreamContext, bucket: str) -> None:
    small = await BlobStore.open(js, bucket=bucket, max_bytes=1024)
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


async def test_gif_is_refused(js: JetStreamContext, bucket: str, blobs: BlobStore) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, "GIF")
    with pytest.raises(NotAnImage):
        await blobs.put_image(buf.getvalue())
    assert await object_count(js, bucket) == 0


@pytest.mark.parametrize("side", [40, 100])  # 1600 pixels: Pillow warns; 10000 (over twice the limit): it raises
async def test_decompression_bomb_is_refused(blobs: BlobStore, monkeypatch: pytest.MonkeyPatch, side: int) -> None:
    data = noise_image(side, side)
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


async def test_corrupt_object_is_detected(js: JetStreamContext, bucket: str, blobs: BlobStore) -> None:
    name = sha(b"the real bytes")
    # Written straight to the object store, so NATS's own digest matches but the name does not.
    await (await js.object_store(bucket)).put(name, b"some other bytes")
    with pytest.raises(BlobCorrupt):
        await blobs.get(name)


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
