"""The bot API through the gateway over real NATS and Postgres: a bot's key speaks for people named by nicks.

The planner does not run here: the RequestChain commands the gateway sends are read off the bus, and the
chains are written into the log as the planner writes them (`BotScript`, and the planner's own
`BatchRecorder` for a batch's end). What the saga itself does with such requests is in tests/e2e/test_bots.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from contracts import Envelope, ImageRef, RenderStep, variant_chain_id
from tests.conftest import Backends
from tests.faces import face_of
from tests.fakes.gateway_world import GatewayWorld, purge_commands
from tests.integration.bot_scripts import BotScript, Sent, record_batch_end, requests_sent
from tests.integration.gateway_helpers import assert_error, create_character, form

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NICK_LIMIT = 3


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_nick_image_limit=NICK_LIMIT,
                               gateway_nick_image_window_s=3600).start()
    await world.chat.builtin("luna", "Luna")
    yield world
    await world.close()


async def signed_up(world: GatewayWorld) -> tuple[str, str]:
    """A new registered user: (user id, API key)."""
    async with world.client() as browser:
        answer = (await browser.post("/auth/signup")).json()
    return answer["user_id"], answer["api_key"]


@contextlib.asynccontextmanager
async def new_bot(world: GatewayWorld) -> AsyncIterator[httpx.AsyncClient]:
    """A bot: a client with its own API key; `bot.user_id` is its key's user."""
    user, key = await signed_up(world)
    async with world.client(headers={"Authorization": f"Bearer {key}"}) as client:
        client.user_id = user  # type: ignore[attr-defined]
        yield client


@pytest.fixture
async def bot(world: GatewayWorld) -> AsyncIterator[httpx.AsyncClient]:
    async with new_bot(world) as client:
        yield client


@pytest.fixture
async def other_bot(world: GatewayWorld) -> AsyncIterator[httpx.AsyncClient]:
    async with new_bot(world) as client:
        yield client


def as_nick(nick: str) -> dict[str, str]:
    return {"X-Likeness-Nick": nick}


@pytest.fixture
async def sent(world: GatewayWorld) -> AsyncIterator[Sent]:
    async with requests_sent(world) as seen:
        yield seen


def _now() -> datetime:
    return datetime.now(UTC)


async def accepted(response: httpx.Response) -> dict:
    assert response.status_code == 202, response.text
    return response.json()


# -- a plain text-to-image request, polled and waited for -------------------------------------------


async def test_a_text_to_image_request_is_polled_waited_for_and_downloaded(world: GatewayWorld, bot, sent) -> None:
    job = await accepted(await bot.post("/request", json={"message": "a lighthouse at dawn -w 768 --seed 3",
                                                          "nick": "alice"}))
    assert job["nick"] == "alice" and job["character_id"] is None and job["status"] == "queued"
    assert (job["status_url"], job["wait_url"]) == (f"/job/{job['job_id']}", f"/wait/{job['job_id']}")
    request = await sent.of(job["job_id"])
    assert (request.mode, request.character_id, request.reference_image) == ("t2i", None, None)
    assert request.user_id == f"{bot.user_id}/alice" and request.request_text == "a lighthouse at dawn -w 768 --seed 3"

    queued = (await bot.get(f"/job/{job['job_id']}")).json()
    assert (queued["status"], queued["result"], queued["error"], queued["nick"]) == ("queued", None, None, "alice")
    assert queued["character_id"] is None and queued["request"] == request.request_text

    script = BotScript(world.store, world.blobs, request=request)
    await script.advance(3)
    assert (await bot.get(f"/job/{job['job_id']}")).json()["status"] == "processing"

    waiting = asyncio.ensure_future(bot.get(f"/wait/{job['job_id']}", params={"timeout": 20}))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await script.finish()
    waited = (await waiting).json()
    assert waited["status"] == "completed" and waited["character_id"] is None and waited["batch"] is None

    done = (await bot.get(f"/job/{job['job_id']}")).json()
    result = done["result"]
    assert done["status"] == "completed" and done["error"] is None
    assert result["sha256"] == script.images[-1].sha256 and result["grid"] is False
    assert result["url"] == f"/job/{job['job_id']}/image" and [p["sha256"] for p in result["pictures"]] == [
        result["sha256"]]
    picture = await bot.get(result["url"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert hashlib.sha256(picture.content).hexdigest() == result["sha256"]

    # The nick's gallery has it; the key's own (no nick) does not mix the nick's pictures in.
    mine = (await bot.get("/me/pictures", headers=as_nick("alice"))).json()
    assert [(p["chain_id"], p["character_id"]) for p in mine] == [(job["job_id"], None)]
    assert (await bot.get("/me/pictures")).json() == []


# -- a character request, with --count 2 giving a grid --------------------------------------------------


async def test_a_character_request_with_count_2_waits_for_both_pictures_and_their_grid(world: GatewayWorld, bot,
                                                                                          sent) -> None:
    # A built-in character's face is the nick's own: the nick gives Luna one, acting through the header.
    uploaded = await bot.post("/characters/upload-image", headers=as_nick("carol"),
                              **form(face_of(2), character_id="luna"))
    assert uploaded.status_code == 200, uploaded.text
    assert_error(await bot.post("/request", json={"message": "@luna on a beach", "nick": "dave"}), 409, "no_reference")

    job = await accepted(await bot.post("/request", json={"message": "@Luna, on a beach at sunset -c 2",
                                                          "nick": "carol"}))
    assert job["character_id"] == "luna"
    request = await sent.of(job["job_id"])
    assert (request.mode, request.character_id, request.request_text) == ("edit", "luna", "on a beach at sunset -c 2")
    assert request.reference_image == ImageRef.model_validate(uploaded.json()["reference"])

    # The planner fans `--count 2` out: the first chain heads the batch, the second is asked for by it.
    batch = uuid.UUID(job["job_id"])
    first = BotScript(world.store, world.blobs, request=request.model_copy(update={
        "batch_id": batch, "variant_count": 2}))
    second = BotScript(world.store, world.blobs, request=request.model_copy(update={
        "chain_id": variant_chain_id(batch, 1), "batch_id": batch, "variant_index": 1, "variant_count": 2}))
    await first.advance(2)
    running = (await bot.get(f"/job/{batch}")).json()
    assert running["status"] == "processing" and running["batch_id"] == str(batch)
    assert running["links"]["batch"] == f"/batch/{batch}"

    waiting = asyncio.ensure_future(bot.get(f"/wait/{batch}", params={"timeout": 20}))
    await first.finish()
    await asyncio.sleep(0.3)
    # The first chain ended, but the job is the batch: /wait holds on until its grid is recorded.
    assert not waiting.done()
    await second.finish()
    await record_batch_end(world, second.chain_id)
    waited = (await waiting).json()
    assert waited["status"] == "completed" and waited["batch"]["status"] == "completed"
    assert waited["batch"]["grid_url"] == f"/batches/{batch}/grid"

    done = (await bot.get(f"/job/{batch}")).json()
    assert done["status"] == "completed" and done["result"]["grid"] is True
    assert done["result"]["url"] == f"/batches/{batch}/grid" and done["result"]["media_type"] == "image/webp"
    assert [p["sha256"] for p in done["result"]["pictures"]] == [first.images[-1].sha256, second.images[-1].sha256]
    grid = await bot.get(done["result"]["url"])
    assert grid.status_code == 200 and hashlib.sha256(grid.content).hexdigest() == done["result"]["sha256"]
    for picture in done["result"]["pictures"]:
        got = await bot.get(picture["url"])
        assert hashlib.sha256(got.content).hexdigest() == picture["sha256"]

    listed = (await bot.get(f"/batch/{batch}")).json()
    assert listed["status"] == "completed" and listed["count"] == 2 and listed["grid"]["sha256"] == done["result"][
        "sha256"]
    assert [(j["index"], j["job_id"], j["status"]) for j in listed["jobs"]] == [
        (0, str(batch), "completed"), (1, str(second.chain_id), "completed")]


# -- nicks kept apart, bots kept apart --------------------------------------------------------------------


async def test_two_nicks_of_one_bot_are_kept_apart_and_another_bot_sees_nothing(world: GatewayWorld, bot, other_bot,
                                                                                 sent) -> None:
    job = await accepted(await bot.post("/request", json={"message": "a red fox", "nick": "erin"}))
    script = BotScript(world.store, world.blobs, request=await sent.of(job["job_id"]))
    await script.finish()
    job_id = job["job_id"]

    # Erin and the bot's key itself see it; another nick of the same bot does not, nor does another bot.
    assert (await bot.get(f"/job/{job_id}", headers=as_nick("erin"))).json()["status"] == "completed"
    assert (await bot.get(f"/job/{job_id}")).json()["nick"] == "erin"
    for path in (f"/job/{job_id}", f"/wait/{job_id}?timeout=0.1", f"/job/{job_id}/image", f"/chains/{job_id}",
                 f"/chat/job/{job_id}", f"/chains/{job_id}/audit"):
        assert_error(await bot.get(path, headers=as_nick("frank")), 404, "chain_not_found")
        assert_error(await other_bot.get(path), 404, "chain_not_found")
        assert_error(await other_bot.get(path, headers=as_nick("erin")), 404, "chain_not_found")
    assert_error(await bot.get(f"/images/{script.images[-1].sha256}", headers=as_nick("frank")), 404,
                 "image_not_found")
    assert (await bot.get(f"/images/{script.images[-1].sha256}", headers=as_nick("erin"))).status_code == 200
    # The same nick under another bot is another person.
    assert (await other_bot.get("/me/pictures", headers=as_nick("erin"))).json() == []


async def test_each_nick_has_its_own_picture_limit(world: GatewayWorld, bot) -> None:
    for _ in range(NICK_LIMIT):
        await accepted(await bot.post("/request", json={"message": "a blue kite", "nick": "gina"}))
    me = (await bot.get("/me", headers=as_nick("gina"))).json()
    assert (me["user_id"], me["images_used"], me["image_limit"], me["images_left"]) == (
        f"{bot.user_id}/gina", NICK_LIMIT, NICK_LIMIT, 0)

    over = await bot.post("/request", json={"message": "a blue kite", "nick": "gina"})
    body = assert_error(over, 429, "nick_limit_reached")
    assert f"{NICK_LIMIT} of its {NICK_LIMIT} pictures" in body["detail"]
    assert 3000 < int(over.headers["retry-after"]) <= 3600
    # Another nick of the same bot, and the bot's key itself, are not held by Gina's limit.
    await accepted(await bot.post("/request", json={"message": "a blue kite", "nick": "hank"}))
    await accepted(await bot.post("/request", json={"message": "a blue kite"}))
    # A batch that would take a nick past its limit is refused whole.
    too_many = await bot.post("/batch", json={"requests": ["a", "b", "c"], "nick": "hank"})
    assert_error(too_many, 429, "nick_limit_reached")
    assert (await bot.get("/me", headers=as_nick("hank"))).json()["images_used"] == 1


async def test_each_nick_has_its_own_request_rate(world: GatewayWorld, bot) -> None:
    burst = int(world.settings.gateway_nick_rate_burst)
    answers = [(await bot.get("/me", headers=as_nick("ivy"))).status_code for _ in range(burst + 1)]
    assert answers[:burst] == [200] * burst
    assert answers[-1] == 429
    assert (await bot.get("/me", headers=as_nick("jack"))).status_code == 200
    assert (await bot.get("/me")).status_code == 200


# -- the queue position -------------------------------------------------------------------------------------


async def test_the_queue_position_counts_the_renders_and_requests_waiting_ahead(world: GatewayWorld, bot) -> None:
    await purge_commands(world.nc)
    # Two renders wait for a renderer (nobody consumes them here), as they would behind a busy one.
    for step in range(2):
        render = RenderStep(chain_id=uuid.uuid4(), step=step, attempt=1, seed=1, prompt="x", width=64, height=64,
                            steps=1, cfg=1.0, model="m", template="sdxl_t2i")
        envelope = Envelope.wrap(render, event_id=uuid.uuid4(), stream="chain-x", occurred_at=_now(),
                                 correlation_id="chain-x", actor="planner")
        await world.running.runtime.bus.publish(envelope, render)
    first = await accepted(await bot.post("/request", json={"message": "a green hill", "nick": "kim"}))
    second = await accepted(await bot.post("/request", json={"message": "a green hill", "nick": "kim"}))
    assert (first["queue_position"], second["queue_position"]) == (2, 3)
    batch = await accepted(await bot.post("/batch", json={"requests": ["a cat", "a dog"], "nick": "lou"}))
    assert [j["queue_position"] for j in batch["jobs"]] == [4, 5] and batch["queue_position"] == 4
    await purge_commands(world.nc)
    assert (await accepted(await bot.post("/request", json={"message": "a hill", "nick": "kim"})))[
        "queue_position"] == 0


# -- a batch of different requests ---------------------------------------------------------------------------


async def test_a_batch_sends_one_job_per_request_and_ends_with_the_grid(world: GatewayWorld, bot, sent) -> None:
    character = await create_character(bot, name="Nora", person=1)
    answer = await accepted(await bot.post("/batch", json={
        "character": character["id"], "nick": "mona",
        "requests": ["on a beach", "in a red dress --seed 4", "sitting on a bench -w 512"]}))
    batch = uuid.UUID(answer["batch_id"])
    assert answer["wait_url"] == f"/wait/{batch}" and answer["character_id"] == character["id"]
    ids = [uuid.UUID(j["job_id"]) for j in answer["jobs"]]
    assert ids == [variant_chain_id(batch, i) for i in range(3)] and ids[0] == batch
    requests = [await sent.of(chain_id) for chain_id in ids]
    assert [(r.variant_index, r.variant_count, r.batch_id, r.batch_kind) for r in requests] == [
        (i, 3, batch, "requests") for i in range(3)]
    assert [r.request_text for r in requests] == [j["request"] for j in answer["jobs"]]
    # The bot's character serves its nicks; the picture is the nick's.
    assert {(r.character_id, r.user_id, r.mode) for r in requests} == {
        (character["id"], f"{bot.user_id}/mona", "edit")}

    queued = (await bot.get(f"/batch/{batch}")).json()
    assert queued["status"] == "queued" and queued["count"] is None

    scripts = [BotScript(world.store, world.blobs, request=r) for r in requests]
    await scripts[0].advance(2)
    running = (await bot.get(f"/batch/{batch}")).json()
    assert running["status"] == "processing" and running["count"] == 3
    assert [j["status"] for j in running["jobs"]] == ["processing", "queued", "queued"]
    for script in scripts:
        await script.finish()
    await record_batch_end(world, scripts[-1].chain_id)
    done = (await bot.get(f"/batch/{batch}", headers=as_nick("mona"))).json()
    assert done["status"] == "completed" and [j["status"] for j in done["jobs"]] == ["completed"] * 3
    assert [j["picture"]["sha256"] for j in done["jobs"]] == [s.images[-1].sha256 for s in scripts]
    grid = await bot.get(done["grid"]["url"])
    assert grid.status_code == 200 and hashlib.sha256(grid.content).hexdigest() == done["grid"]["sha256"]
    # The --count endpoint reads it too.
    assert (await bot.get(f"/batches/{batch}", headers=as_nick("mona"))).json()["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"requests": ["on a beach"]}, 422, "invalid_request"),
        ({"requests": [f"picture {i}" for i in range(21)]}, 422, "invalid_request"),
        ({"requests": ["a cat -c 2", "a dog"]}, 422, "count_in_batch"),
        ({"requests": ["@luna a cat", "a dog"]}, 422, "character_in_request"),
        ({"requests": ["a cat", "a dog"], "character": "no such one"}, 422, "invalid_character"),
        ({"requests": ["a cat", "a dog"], "character": "nobody-here"}, 404, "character_not_found"),
        ({"requests": ["a cat", "  "]}, 422, "invalid_request"),
    ],
)
async def test_a_batch_that_cannot_be_made_is_refused_whole(world: GatewayWorld, bot, body, status, code) -> None:
    assert_error(await bot.post("/batch", json={**body, "nick": "otto"}), status, code)
    assert (await bot.get("/me", headers=as_nick("otto"))).json()["images_used"] == 0


# -- what is refused at the door --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ({"message": "a fox", "nick": "two words"}, {}, 422, "invalid_request"),
        ({"message": "a fox", "nick": "a/b"}, {}, 422, "invalid_request"),
        ({"message": "a fox", "nick": "pat"}, as_nick("quinn"), 422, "nick_mismatch"),
        ({"message": "a fox"}, as_nick("x" * 65), 400, "invalid_nick"),
        ({"message": "@luna @marco on a beach", "nick": "pat"}, {}, 422, "several_characters"),
        ({"message": "@luna", "nick": "pat"}, {}, 422, "empty_request"),
        ({"message": "@nobody-here on a beach", "nick": "pat"}, {}, 404, "character_not_found"),
        ({"message": "--character=?? on a beach", "nick": "pat"}, {}, 422, "invalid_character"),
        ({"message": "", "nick": "pat"}, {}, 422, "invalid_request"),
    ],
)
async def test_a_request_that_cannot_be_made_says_why(world: GatewayWorld, bot, body, headers, status, code) -> None:
    assert_error(await bot.post("/request", json=body, headers=headers), status, code)


async def test_only_a_key_speaks_for_nicks_and_a_nick_cannot_manage_its_keys(world: GatewayWorld, alice, bot) -> None:
    assert_error(await alice.post("/request", json={"message": "a fox", "nick": "rae"}), 403, "nick_needs_api_key")
    assert_error(await alice.get("/me", headers=as_nick("rae")), 403, "nick_needs_api_key")
    assert_error(await bot.get("/auth/keys", headers=as_nick("rae")), 403, "nick_not_allowed")
    assert_error(await bot.post("/auth/keys", headers=as_nick("rae")), 403, "nick_not_allowed")
    assert (await bot.get("/auth/keys")).status_code == 200
    # A browser (no nick) may still ask for a text-to-image picture for itself.
    assert (await accepted(await alice.post("/request", json={"message": "a fox"})))["nick"] is None


async def test_the_models_a_message_may_name_are_listed(world: GatewayWorld, bot) -> None:
    models = {m["name"]: m["kind"] for m in (await bot.get("/models")).json()}
    assert models["sdxl-base"] == models["flux-dev"] == "t2i" and models["qwen-image-edit"] == "edit"
