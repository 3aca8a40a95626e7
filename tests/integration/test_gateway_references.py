"""A built-in character's face is each user's own: reference photos, avatars, pictures and the
anonymous picture limit in chat, through the gateway over real NATS and Postgres.

We ship no photos of real people, so every user gives a built-in character their own reference;
another user's photo must never become your character's face, your avatar or your image.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from contracts import CharacterReferenceSet, Envelope
from contracts.streams import character_stream
from tests.fakes.gateway_world import GatewayWorld
from tests.conftest import Backends
from tests.faces import face_of
from tests.integration.gateway_helpers import assert_error, chat, create_character, form

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ANON_LIMIT = 1


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_anonymous_image_limit=ANON_LIMIT,
                               gateway_command_timeout_s=5.0, gateway_sse_heartbeat_s=1.0).start()
    yield world
    await world.close()


async def builtin(world: GatewayWorld) -> str:
    character_id = f"nora-{uuid.uuid4().hex[:8]}"
    await world.chat.builtin(character_id, "Nora")
    await world.gateway.projector.sync()
    return character_id


async def listed(client: httpx.AsyncClient, character_id: str) -> dict:
    return next(c for c in (await client.get("/characters")).json() if c["id"] == character_id)


async def avatar(client: httpx.AsyncClient, character_id: str) -> httpx.Response:
    response = await client.get(f"/avatar/{character_id}")
    assert response.status_code == 200, response.text
    return response


async def test_a_reference_given_to_a_builtin_is_the_givers_alone(world: GatewayWorld, alice, bob,
                                                                   requests_seen) -> None:
    nora = await builtin(world)
    assert (await listed(alice, nora))["has_reference"] is False
    given = await alice.post("/characters/upload-image", **form(face_of(2), character_id=nora))
    assert given.status_code == 200, given.text
    alices = given.json()["reference"]
    assert given.json()["has_reference"] is True

    # Alice sees her photo everywhere; Bob sees none of it.
    assert (await listed(alice, nora))["reference"]["sha256"] == alices["sha256"]
    assert (await listed(bob, nora))["has_reference"] is False
    assert (await avatar(alice, nora)).content == await world.blobs.get(alices["sha256"])
    bobs_avatar = await avatar(bob, nora)
    assert bobs_avatar.headers["content-type"].startswith("image/svg+xml")
    assert "Cookie" in bobs_avatar.headers["vary"]
    assert (await alice.get(f"/images/{alices['sha256']}")).status_code == 200
    assert_error(await bob.get(f"/images/{alices['sha256']}"), 404, "image_not_found")

    # Bob cannot have a picture of Alice's face, and Alice's picture is of hers.
    assert_error(await bob.post("/chat/generate-image", json={"character_id": nora, "request": "at the beach"}),
                 409, "no_reference")
    started = await alice.post("/chat/generate-image", json={"character_id": nora, "request": "at the beach"})
    assert started.status_code == 202, started.text

    # Bob gives Nora his own face; each keeps theirs.
    bobs = (await bob.post("/characters/upload-image", **form(face_of(4), character_id=nora))).json()["reference"]
    assert bobs["sha256"] != alices["sha256"]
    assert (await avatar(bob, nora)).content == await world.blobs.get(bobs["sha256"])
    assert (await avatar(alice, nora)).content == await world.blobs.get(alices["sha256"])
    again = await bob.post("/chat/generate-image", json={"character_id": nora, "request": "in a park"})
    assert again.status_code == 202, again.text

    async with asyncio.timeout(10):
        while len(requests_seen) < 2:
            await asyncio.sleep(0.02)
    by_chain = {e.data["chain_id"]: e.data for e in requests_seen}
    assert by_chain[started.json()["job_id"]]["reference_image"]["sha256"] == alices["sha256"]
    assert by_chain[again.json()["job_id"]]["reference_image"]["sha256"] == bobs["sha256"]


async def test_a_shared_reference_of_a_builtin_from_an_older_log_is_nobodys(world: GatewayWorld, alice) -> None:
    nora = await builtin(world)
    stream = character_stream(nora)
    legacy = CharacterReferenceSet(character_id=nora, image=await world.blobs.put_image(face_of(1)))
    envelope = Envelope.wrap(legacy, event_id=uuid.uuid4(), stream=stream, occurred_at=datetime.now(UTC),
                             correlation_id=stream, actor="chat")
    await world.store.append(stream, await world.store.stream_version(stream), [envelope])
    await world.gateway.projector.sync()
    assert (await listed(alice, nora))["has_reference"] is False
    assert (await avatar(alice, nora)).headers["content-type"].startswith("image/svg+xml")
    assert_error(await alice.post("/chat/generate-image", json={"character_id": nora, "request": "x"}),
                 409, "no_reference")
    assert_error(await alice.get(f"/images/{legacy.image.sha256}"), 404, "image_not_found")


async def test_chat_makes_no_picture_past_the_anonymous_limit_and_says_log_in(world: GatewayWorld) -> None:
    async with world.client() as carol:
        mia = await create_character(carol, "Mia")
        first = await chat(carol, character_id=mia["id"], text="send me a picture at the beach")
        assert any(event == "image" for event, _ in first)
        assert first[-1][1]["chain_id"] and not first[-1][1]["login_required"]
        # That was the one picture an anonymous session may have here: chat's pictures count too.
        assert (await carol.get("/me")).json()["images_left"] == 0

        over = await chat(carol, character_id=mia["id"], text="send me a picture in the snow")
        assert not any(event == "image" for event, _ in over)
        reply = over[-1][1]
        assert reply["login_required"] is True and reply["chain_id"] is None
        assert_error(await carol.post("/chat/generate-image", json={"character_id": mia["id"], "request": "x"}),
                     403, "login_required")

        assert (await carol.post("/auth/signup")).status_code == 201
        registered = await chat(carol, character_id=mia["id"], text="send me a picture in the rain")
        assert any(event == "image" for event, _ in registered)
        assert not registered[-1][1]["login_required"]
