"""The blob store's S3 backend against moto's S3 server (a real HTTP server started by the test): start-up
checks of the bucket, key layout and metadata, presigned URLs, and settings that cannot work."""

from __future__ import annotations

import asyncio
import hashlib
import io
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from services.runtime.blobs import BlobCorrupt, BlobNotFound, BlobStore, BlobUnavailable
from services.runtime.settings import RuntimeSettings
from services.launcher.embedded import free_port
from tests.conftest import Backends, service_env
from tests.fakes.s3_server import ACCESS_KEY, MotoS3, moto_s3

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@pytest.fixture
async def bucket(s3: MotoS3) -> str:
    return s3.new_bucket()


@pytest.fixture
async def store(s3: MotoS3, bucket: str) -> AsyncIterator[BlobStore]:
    opened = await BlobStore.open(None, settings=RuntimeSettings(**s3.settings(bucket)))
    yield opened
    await opened.close()


def png(colour: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 16), colour).save(out, "PNG")
    return out.getvalue()


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def test_a_missing_bucket_stops_start_up_with_what_to_do(s3: MotoS3) -> None:
    missing = f"nowhere-{uuid.uuid4().hex[:8]}"
    with pytest.raises(BlobUnavailable) as caught:
        await BlobStore.open(None, settings=RuntimeSettings(**s3.settings(missing)))
    message = str(caught.value)
    assert missing in message and "does not exist" in message and "LIKENESS_S3_BUCKET" in message


async def test_a_service_whose_bucket_is_missing_does_not_start_and_says_why(s3: MotoS3, backends: Backends) -> None:
    missing = f"nowhere-{uuid.uuid4().hex[:8]}"
    env = service_env(backends, **{f"LIKENESS_{key.upper()}": str(value) for key, value in s3.settings(missing).items()},
                      LIKENESS_HTTP_PORT=str(free_port()), LIKENESS_LOG_FORMAT="text")
    gateway = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.gateway", env=env,
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, stderr = await asyncio.wait_for(gateway.communicate(), 60)
    finally:
        if gateway.returncode is None:
            gateway.kill()
            await gateway.wait()
    log = stderr.decode()
    assert gateway.returncode != 0
    assert "cannot start" in log and f"S3 bucket {missing!r} does not exist" in log, log[-2000:]


async def test_a_missing_bucket_is_created_when_asked(s3: MotoS3) -> None:
    wanted = f"made-{uuid.uuid4().hex[:8]}"
    store = await BlobStore.open(None, settings=RuntimeSettings(**s3.settings(wanted, s3_create_bucket=True)))
    try:
        ref = await store.put_image(png())
        assert await store.get(ref.sha256) == png()
        # A second replica starting after the first finds the bucket made.
        again = await BlobStore.open(None, settings=RuntimeSettings(**s3.settings(wanted, s3_create_bucket=True)))
        assert await again.exists(ref.sha256)
        await again.close()
    finally:
        await store.close()


async def test_an_unreachable_endpoint_stops_start_up_with_what_to_do(s3: MotoS3) -> None:
    settings = s3.settings("anything", s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_max_attempts=1)
    with pytest.raises(BlobUnavailable, match="cannot be reached.*LIKENESS_S3_ENDPOINT_URL"):
        await BlobStore.open(None, settings=RuntimeSettings(**settings))


async def test_objects_sit_under_the_prefix_with_their_type_and_hash(s3: MotoS3, bucket: str) -> None:
    store = await BlobStore.open(None, settings=RuntimeSettings(**s3.settings(bucket, s3_prefix="likeness/blobs/")))
    try:
        ref = await store.put_image(png())
    finally:
        await store.close()
    head = await asyncio.to_thread(s3.client.head_object, Bucket=bucket, Key=f"likeness/blobs/{ref.sha256}")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["sha256"] == ref.sha256 == hashlib.sha256(png()).hexdigest()
    assert head["ContentLength"] == ref.bytes
    listed = await asyncio.to_thread(s3.client.list_objects_v2, Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == [f"likeness/blobs/{ref.sha256}"]


async def test_a_presigned_url_serves_the_bytes_and_expires(s3: MotoS3, store: BlobStore) -> None:
    ref = await store.put_image(png())
    url = await store.presigned_url(ref.sha256, 1)
    assert url is not None and url.startswith(f"{s3.endpoint_url}/")
    signed = query(url)
    # moto does not enforce expiry: the signed parameters say how long S3 will honour the URL.
    assert signed["X-Amz-Expires"] == "1" and signed["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert signed["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/")
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == png() and response.headers["content-type"] == "image/png"


async def test_a_presigned_download_names_the_file(store: BlobStore) -> None:
    ref = await store.put_image(png((1, 2, 3)))
    url = await store.presigned_url(ref.sha256, 300, filename="likeness-abc.png")
    assert url is not None and query(url)["X-Amz-Expires"] == "300"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.headers["content-disposition"] == 'attachment; filename="likeness-abc.png"'


async def test_urls_for_browsers_are_signed_for_the_public_endpoint(s3: MotoS3, bucket: str) -> None:
    # The same server under another name, as an ingress or a CDN would expose it.
    public = s3.endpoint_url.replace("127.0.0.1", "localhost")
    store = await BlobStore.open(None, settings=RuntimeSettings(**s3.settings(bucket, s3_public_endpoint_url=public)))
    try:
        ref = await store.put_image(png((9, 9, 9)))
        url = await store.presigned_url(ref.sha256, 60)
    finally:
        await store.close()
    assert url is not None and url.startswith(f"{public}/{bucket}/{ref.sha256}?")
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(url)).content == png((9, 9, 9))


async def test_no_url_is_signed_for_a_missing_or_tampered_object(s3: MotoS3, bucket: str, store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await store.presigned_url(hashlib.sha256(b"never stored").hexdigest(), 60)
    ref = await store.put_image(png((5, 6, 7)))
    await asyncio.to_thread(s3.client.put_object, Bucket=bucket, Key=ref.sha256, Body=png((7, 6, 5)))
    with pytest.raises(BlobCorrupt):
        await store.presigned_url(ref.sha256, 60)


@pytest.mark.parametrize(("fields", "complaint"), [
    ({"s3_bucket": " "}, "LIKENESS_S3_BUCKET"),
    ({"s3_access_key_id": "only-half"}, "LIKENESS_S3_SECRET_ACCESS_KEY"),
    ({"s3_prefix": "/blobs/"}, "LIKENESS_S3_PREFIX"),
    ({"s3_create_bucket": True, "environment": "prod"}, "LIKENESS_S3_CREATE_BUCKET"),
])
def test_settings_that_cannot_work_are_refused(fields: dict, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        RuntimeSettings(blob_store="s3", **fields)


def test_s3_settings_are_not_checked_while_the_store_is_nats() -> None:
    assert RuntimeSettings(blob_store="nats", s3_bucket="").blob_store == "nats"
