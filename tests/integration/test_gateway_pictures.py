"""A user's pictures over real NATS and Postgres: one entry per finished chain (its final image; the
last step's image, the same picture, is not listed again), newest first, per character, with the
chain's score, threshold and steps; deleting hides a picture from /me/pictures and /me/images while
the chain, its audit and its images still answer, and it stays hidden after the views are rebuilt.

Chains are written into the log by `ChainScript`, as the planner would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Backends
from tests.fakes.gateway_world import ChainScript, GatewayWorld, png
from tests.integration.gateway_helpers import assert_error, user_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_anonymous_image_limit=None,
                               gateway_rate_per_s=1000.0, gateway_rate_burst=1000.0).start()
    yield world
    await world.close()


async def finished(world: GatewayWorld, client, character_id: str, request_text: str, *, steps: int = 2,
                   fail_at: int | None = None) -> ChainScript:
    script = world.chain(user_id=await user_id(client), character_id=character_id, steps=steps,
                         request_text=request_text, fail_at=fail_at,
                         reference=await world.blobs.put_image(png((120, 80, 40))))
    await script.finish()
    return script


async def test_one_entry_per_finished_picture_newest_first_labelled_with_its_steps(world: GatewayWorld, alice,
                                                                                   bob) -> None:
    beach = await finished(world, alice, "mia-pics", "on a beach", steps=3)
    park = await finished(world, alice, "mia-pics", "in a park")
    await finished(world, alice, "mia-pics", "in the rain", fail_at=1)
    running = world.chain(user_id=await user_id(alice), character_id="mia-pics", steps=2,
                          reference=await world.blobs.put_image(png((1, 2, 3))))
    await running.advance(6)
    other = await finished(world, alice, "noa-pics", "at a concert")

    pictures = (await alice.get("/me/pictures")).json()
    assert [p["chain_id"] for p in pictures] == [str(other.chain_id), str(park.chain_id), str(beach.chain_id)]
    picture = pictures[2]
    final = beach.images[-1].sha256
    assert picture["character_id"] == "mia-pics" and picture["request_text"] == "on a beach"
    assert picture["sha256"] == final and picture["score"] == 78.0 and picture["threshold"] == 40.0
    assert (picture["url"], picture["thumb_url"], picture["download_url"]) == (
        f"/images/{final}", f"/images/{final}?thumb=1", f"/images/{final}?download=1")
    assert picture["created_at"] and picture["parent_chain_id"] is None
    assert [(s["index"], s["kind"], s["seed"], s["score"]) for s in picture["steps"]] == [
        (0, "background", 1234, 80.0), (1, "outfit", 1235, 79.0), (2, "pose", 1236, 78.0)]
    assert [s["sha256"] for s in picture["steps"]] == [i.sha256 for i in beach.images]
    assert picture["steps"][0]["thumb_url"] == f"/images/{beach.images[0].sha256}?thumb=1"
    # The last step made the final image: one picture, not two.
    assert sum(1 for p in pictures if p["sha256"] == final) == 1

    mine = (await alice.get("/me/pictures", params={"character_id": "mia-pics"})).json()
    assert [p["chain_id"] for p in mine] == [str(park.chain_id), str(beach.chain_id)]
    page = (await alice.get("/me/pictures", params={"character_id": "mia-pics", "limit": 1, "offset": 1})).json()
    assert [p["chain_id"] for p in page] == [str(beach.chain_id)]
    assert (await alice.get("/me/pictures", params={"character_id": "nobody"})).json() == []
    assert (await bob.get("/me/pictures")).json() == []
    assert_error(await alice.get("/me/pictures", params={"limit": 0}), 422, "invalid_request")
    assert_error(await alice.get("/me/pictures", params={"offset": -1}), 422, "invalid_request")


async def test_deleting_hides_a_picture_while_its_chain_and_audit_still_answer(world: GatewayWorld, alice,
                                                                               bob) -> None:
    kept = await finished(world, alice, "lea-pics", "by the sea")
    gone = await finished(world, alice, "lea-pics", "on a hill")
    chain = str(gone.chain_id)
    assert_error(await bob.delete(f"/me/pictures/{chain}"), 404, "chain_not_found")
    assert_error(await alice.delete(f"/me/pictures/{uuid.uuid4()}"), 404, "chain_not_found")
    assert_error(await alice.delete("/me/pictures/not-a-chain"), 422, "invalid_request")

    deleted = await alice.delete(f"/me/pictures/{chain}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await alice.delete(f"/me/pictures/{chain}")).status_code == 204

    async def listed() -> tuple[list[str], set[str]]:
        pictures = (await alice.get("/me/pictures", params={"character_id": "lea-pics"})).json()
        images = (await alice.get("/me/images")).json()
        return [p["chain_id"] for p in pictures], {i["chain_id"] for i in images}

    pictures, images = await listed()
    assert pictures == [str(kept.chain_id)]
    assert chain not in images and str(kept.chain_id) in images
    # The history stays: the chain, its audit and its images answer as before.
    state = await alice.get(f"/chains/{chain}")
    assert state.status_code == 200 and state.json()["status"] == "completed"
    assert (await alice.get(f"/chains/{chain}/audit")).status_code == 200
    image = await alice.get(f"/images/{gone.images[-1].sha256}")
    assert image.status_code == 200 and image.content == await world.blobs.get(gone.images[-1].sha256)

    projector = world.gateway.projector
    await projector.rebuild()
    while await projector.run_once():
        pass
    assert await listed() == (pictures, images)
