"""The gateway over an S3 blob store with presigned URLs on: an image of yours is a 307 to a short-lived URL
of the store (after the same ownership checks as the bytes), never someone else's; thumbnails still stream."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import Backends
from tests.fakes.gateway_world import GatewayWorld
from tests.fakes.s3_server import MotoS3, moto_s3
from tests.integration.bot_scripts import BotScript, requests_sent
from tests.integration.gateway_helpers import assert_error, create_character

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TTL_S = 120


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module")
async def world(backends: Backends, s3: MotoS3) -> AsyncIterator[GatewayWorld]:
    settings = s3.settings(s3.new_bucket(), blob_presigned_urls=True, blob_url_ttl_s=TTL_S)
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_command_timeout_s=5.0,
                               **settings).start()
    yield world
    await world.close()


async def test_your_image_is_a_redirect_to_a_presigned_url(world: GatewayWorld, alice: httpx.AsyncClient) -> None:
    reference = (await create_character(alice))["reference"]
    response = await alice.get(f"/images/{reference['sha256']}")
    assert response.status_code == 307, response.text
    assert response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    assert location.startswith(f"{world.settings.s3_endpoint_url}/")
    assert parse_qs(urlsplit(location).query)["X-Amz-Expires"] == [str(TTL_S)]
    async with httpx.AsyncClient(timeout=10) as browser:
        fetched = await browser.get(location)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == reference["sha256"]
    assert fetched.headers["content-type"] == reference["media_type"]


async def test_a_download_url_names_the_file(alice: httpx.AsyncClient) -> None:
    sha = (await create_character(alice, name="Ada", person=1))["reference"]["sha256"]
    response = await alice.get(f"/images/{sha}?download=1")
    assert response.status_code == 307
    async with httpx.AsyncClient(timeout=10) as browser:
        fetched = await browser.get(response.headers["location"])
    assert fetched.headers["content-disposition"].startswith(f'attachment; filename="likeness-{sha[:12]}.')


async def test_someone_elses_image_gets_no_url(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    sha = (await create_character(alice, name="Lena", person=2))["reference"]["sha256"]
    response = await bob.get(f"/images/{sha}")
    assert_error(response, 404, "image_not_found")
    assert "location" not in response.headers
    assert "X-Amz" not in response.text


async def test_thumbnails_are_still_made_and_streamed_by_the_gateway(alice: httpx.AsyncClient) -> None:
    sha = (await create_character(alice, name="Iris", person=3))["reference"]["sha256"]
    response = await alice.get(f"/images/{sha}?thumb=1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"


async def test_an_image_missing_from_the_bucket_is_a_json_404(world: GatewayWorld, s3: MotoS3,
                                                               alice: httpx.AsyncClient) -> None:
    sha = (await create_character(alice, name="Vera", person=4))["reference"]["sha256"]
    s3.client.delete_object(Bucket=world.settings.s3_bucket, Key=sha)
    assert_error(await alice.get(f"/images/{sha}"), 404, "image_missing")


async def test_a_bots_picture_is_a_redirect_for_its_key_alone(world: GatewayWorld) -> None:
    keys = []
    for _ in range(2):
        async with world.client() as browser:
            keys.append((await browser.post("/auth/signup")).json()["api_key"])
    owner, stranger = (world.client(headers={"Authorization": f"Bearer {key}"}) for key in keys)
    async with owner, stranger, requests_sent(world) as sent:
        job = (await owner.post("/request", json={"message": "a lighthouse", "nick": "ann"})).json()
        script = BotScript(world.store, world.blobs, request=await sent.of(job["job_id"]))
        await script.finish()
        await owner.get(f"/wait/{job['job_id']}", params={"timeout": 20})
        response = await owner.get(f"/job/{job['job_id']}/image")
        assert response.status_code == 307 and response.headers["cache-control"] == "no-store"
        async with httpx.AsyncClient(timeout=10) as browser:
            fetched = await browser.get(response.headers["location"])
        assert hashlib.sha256(fetched.content).hexdigest() == script.images[-1].sha256
        refused = await stranger.get(f"/job/{job['job_id']}/image")
        assert_error(refused, 404, "chain_not_found")
        assert "location" not in refused.headers
