"""`--count N` batches through the gateway over real NATS and Postgres: GET /batches/{id} follows the variant
chains from the request to the grid, and GET /batches/{id}/grid serves the grid to its owner only.

The chains are written into the log by `ChainScript` as the planner would (with their batch fields), and the
batch's end by the planner's own `BatchRecorder`, so the stream the gateway reads is the one the planner writes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from contracts import ChainRequested, ImageRef
from contracts.streams import chain_stream
from services.planner.batches import BatchRecorder
from services.planner.chain_writer import ChainService
from services.planner.saga.decide import variant_chain_id
from tests.conftest import Backends
from tests.fakes.gateway_world import ChainScript, GatewayWorld
from tests.integration.gateway_helpers import assert_error, create_character, user_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_anonymous_image_limit=None).start()
    yield world
    await world.close()


class VariantScript(ChainScript):
    """A chain of a batch: its request carries the batch id and its place in the batch, as the planner's are."""

    def __init__(self, *args, batch_id: uuid.UUID, variant_index: int, variant_count: int, **options) -> None:
        super().__init__(*args, **options)
        self.batch = {"batch_id": batch_id, "variant_index": variant_index, "variant_count": variant_count}

    async def _plan(self):
        script = await super()._plan()
        script[0] = lambda: ChainRequested(chain_id=self.chain_id, character_id=self.character_id,
                                           user_id=self.user_id, request_text=self.request_text,
                                           reference_image=self.reference, **self.batch)
        return script


def _now() -> datetime:
    return datetime.now(UTC)


async def record_batch_end(world: GatewayWorld, last: uuid.UUID) -> None:
    """What the planner does when a chain of a batch ends: the last one to end records the batch."""
    chains = ChainService(world.store, _now)
    cause = (await world.store.read_stream(chain_stream(last)))[-1].envelope
    recorder = BatchRecorder(world.store, chains, lambda: world.blobs, _now)
    await recorder.chain_ended(await chains.load(chain_stream(last)), cause)


async def batch_of(client: httpx.AsyncClient, batch_id) -> dict:
    response = await client.get(f"/batches/{batch_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_batch_is_followed_from_its_request_to_its_grid(world: GatewayWorld, alice, bob) -> None:
    character = await create_character(alice)
    answer = await alice.post("/chat/generate-image", json={"character_id": character["id"],
                                                           "request": "on a beach --count 2"})
    assert answer.status_code == 202, answer.text
    batch = uuid.UUID(answer.json()["chain_id"])

    # Not planned yet: the gateway knows only the request it sent.
    queued = await batch_of(alice, batch)
    assert queued["status"] == "queued" and queued["count"] is None
    assert [(c["chain_id"], c["status"]) for c in queued["chains"]] == [(str(batch), "queued")]

    owner = await user_id(alice)
    common = {"user_id": owner, "character_id": character["id"], "request_text": "on a beach --count 2",
              "steps": 1, "batch_id": batch, "variant_count": 2}
    reference = ImageRef.model_validate(character["reference"])
    first = VariantScript(world.store, world.blobs, chain_id=batch, variant_index=0, reference=reference, **common)
    second = VariantScript(world.store, world.blobs, chain_id=variant_chain_id(batch, 1), variant_index=1,
                           reference=reference, **common)

    await first.advance(2)  # requested and planned: the planner has asked for the second chain
    running = await batch_of(alice, batch)
    assert running["status"] == "running" and running["count"] == 2
    assert [(c["variant_index"], c["chain_id"], c["status"]) for c in running["chains"]] == [
        (0, str(batch), "running"), (1, None, "queued")]

    await first.finish()
    await second.advance(2)
    both = await batch_of(alice, batch)
    assert [(c["chain_id"], c["status"]) for c in both["chains"]] == [
        (str(batch), "completed"), (str(second.chain_id), "running")]
    assert both["chains"][0]["final_image"]["sha256"] == first.images[-1].sha256
    assert both["grid_image"] is None
    assert_error(await alice.get(f"/batches/{batch}/grid"), 404, "grid_not_found")

    await second.finish()
    await record_batch_end(world, second.chain_id)
    done = await batch_of(alice, batch)
    assert done["status"] == "completed"
    assert done["completed"] == [str(batch), str(second.chain_id)]
    assert [c["final_image"]["sha256"] for c in done["chains"]] == [first.images[-1].sha256, second.images[-1].sha256]
    grid = done["grid_image"]
    assert grid["url"] == f"/batches/{batch}/grid" and grid["media_type"] == "image/webp"

    picture = await alice.get(grid["url"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/webp"
    assert hashlib.sha256(picture.content).hexdigest() == grid["sha256"]
    again = await alice.get(grid["url"], headers={"If-None-Match": picture.headers["etag"]})
    assert again.status_code == 304

    # Someone else's batch does not exist for them.
    assert_error(await bob.get(f"/batches/{batch}"), 404, "chain_not_found")
    assert_error(await bob.get(f"/batches/{batch}/grid"), 404, "chain_not_found")


async def test_a_single_chain_is_not_a_batch(world: GatewayWorld, alice) -> None:
    character = await create_character(alice, name="Ines", person=1)
    single = world.chain(user_id=await user_id(alice), character_id=character["id"],
                         reference=ImageRef.model_validate(character["reference"]), steps=1)
    await single.finish()
    body = assert_error(await alice.get(f"/batches/{single.chain_id}"), 404, "batch_not_found")
    assert f"/chains/{single.chain_id}" in body["detail"]
