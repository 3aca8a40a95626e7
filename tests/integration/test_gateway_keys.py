"""API key management over real NATS and Postgres: list, add and revoke one's keys; a revoked key is
refused at once by the gateway that revoked it, and by another gateway process within its cache time.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from services.gateway import accounts as accounts_module
from services.gateway.accounts import Accounts
from tests.fakes.gateway_world import GatewayWorld
from tests.conftest import Backends
from tests.integration.gateway_helpers import assert_error

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY_FIELDS = {"key_id", "prefix", "created_at", "last_used_at", "revoked_at"}


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url).start()
    yield world
    await world.close()


async def sign_up(world: GatewayWorld) -> str:
    async with world.client() as browser:
        response = await browser.post("/auth/signup")
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


def program(world: GatewayWorld, key: str) -> httpx.AsyncClient:
    return world.client(headers={"Authorization": f"Bearer {key}"})


async def keys_of(client: httpx.AsyncClient) -> list[dict]:
    response = await client.get("/auth/keys")
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_user_adds_a_key_revokes_the_first_and_only_the_second_works(world: GatewayWorld) -> None:
    first = await sign_up(world)
    async with program(world, first) as one:
        me = (await one.get("/me")).json()
        listed = await keys_of(one)
        assert len(listed) == 1 and set(listed[0]) == KEY_FIELDS
        assert listed[0]["prefix"] == first[:8] and listed[0]["revoked_at"] is None
        assert listed[0]["last_used_at"] is not None  # this very request used it
        raw = (await one.get("/auth/keys")).text
        assert hashlib.sha256(first.encode()).hexdigest() not in raw and first not in raw

        created = await one.post("/auth/keys")
        assert created.status_code == 201, created.text
        second = created.json()["api_key"]
        assert second.startswith("lk_") and second != first and created.json()["prefix"] == second[:8]
        listed = await keys_of(one)
        assert [k["key_id"] for k in listed][0] == created.json()["key_id"]  # newest first
        assert [k["prefix"] for k in listed] == [second[:8], first[:8]]
        first_id = listed[1]["key_id"]

        revoked = await one.delete(f"/auth/keys/{first_id}")  # the key this request is made with
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["key_id"] == first_id and revoked.json()["revoked_at"] is not None
        refused = await one.get("/me")
        assert_error(refused, 401, "invalid_api_key")
        assert refused.headers["www-authenticate"] == "Bearer"

    async with program(world, second) as two:
        assert (await two.get("/me")).json()["user_id"] == me["user_id"]
        states = {k["key_id"]: k["revoked_at"] for k in await keys_of(two)}
        assert states[first_id] == revoked.json()["revoked_at"] and states[created.json()["key_id"]] is None
        again = await two.delete(f"/auth/keys/{first_id}")
        assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    async with world.client() as browser:
        assert_error(await browser.post("/auth/login", json={"api_key": first}), 401, "invalid_api_key")


async def test_a_browser_that_signed_up_manages_its_keys_by_its_session(world: GatewayWorld) -> None:
    async with world.client() as browser:
        assert (await browser.get("/me")).json()["kind"] == "anonymous"
        key = (await browser.post("/auth/signup")).json()["api_key"]
        assert [k["prefix"] for k in await keys_of(browser)] == [key[:8]]
        assert (await browser.post("/auth/keys")).status_code == 201
        assert len(await keys_of(browser)) == 2


async def test_nobody_revokes_or_sees_someone_elses_key(world: GatewayWorld) -> None:
    alice_key, bob_key = await sign_up(world), await sign_up(world)
    async with program(world, alice_key) as alice, program(world, bob_key) as bob:
        alices = await keys_of(alice)
        assert {k["key_id"] for k in alices}.isdisjoint({k["key_id"] for k in await keys_of(bob)})
        body = assert_error(await bob.delete(f"/auth/keys/{alices[0]['key_id']}"), 404, "key_not_found")
        assert "GET /auth/keys" in body["detail"]
        assert_error(await bob.delete("/auth/keys/not-a-key-id"), 404, "key_not_found")
        assert_error(await bob.delete("/auth/keys/00000000-0000-0000-0000-000000000000"), 404, "key_not_found")
        assert (await alice.get("/me")).status_code == 200
        assert (await keys_of(alice))[0]["revoked_at"] is None


async def test_anonymous_callers_may_not_manage_keys(world: GatewayWorld) -> None:
    async with world.client() as anonymous:
        for method, path in (("GET", "/auth/keys"), ("POST", "/auth/keys"),
                             ("DELETE", "/auth/keys/00000000-0000-0000-0000-000000000000")):
            body = assert_error(await anonymous.request(method, path), 403, "login_required")
            assert "/auth/signup" in body["detail"]
    async with program(world, "lk_not-a-real-key") as stranger:
        assert_error(await stranger.get("/auth/keys"), 401, "invalid_api_key")


async def test_another_gateway_process_refuses_a_revoked_key_once_its_cache_expires(
        world: GatewayWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await sign_up(world)
    other = Accounts(world.gateway.db, anonymous_image_limit=None)  # a second replica's view
    owner = await other.user_for_key(key)
    assert owner is not None
    async with program(world, key) as client:
        key_id = (await keys_of(client))[0]["key_id"]
        assert (await client.delete(f"/auth/keys/{key_id}")).status_code == 200
    assert await other.user_for_key(key) == owner  # still cached there, for at most the cache time
    monkeypatch.setattr(accounts_module, "_KEY_CACHE_S", 0.0)
    assert await other.user_for_key(key) is None
