"""The gateway's API over real NATS and Postgres: characters, uploads, chat, picture jobs, auth, limits.

One gateway runs in this process on a free port (its real Runtime: HTTP, live hub, projector), next
to an outbox relay and fakes of the chat and facecheck services that speak their real protocols
(tests/fakes/gateway_world.py). Every test talks HTTP to it as a browser or a program would.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import uuid
from collections.abc import AsyncIterator

import pytest
from PIL import Image, ImageChops, ImageStat

from contracts import REGISTRY, ModelUsage
from services.gateway.auth import RateLimiter
from tests.fakes.gateway_world import GatewayWorld, png
from tests.conftest import Backends
from tests.faces import face_of
from tests.integration.gateway_helpers import assert_error, chat, create_character, form, user_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ANON_LIMIT = 3


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_anonymous_image_limit=ANON_LIMIT,
                               gateway_command_timeout_s=5.0, gateway_sse_heartbeat_s=1.0,
                               gateway_upload_max_bytes=2 * 1024 * 1024, gateway_upload_max_pixels=4_000_000).start()
    await world.chat.builtin("ayla-test", "Ayla")
    yield world
    await world.close()




# -- characters and uploads -------------------------------------------------------------------------


def phone_photo(person: int) -> bytes:
    """A face as a phone saves it: JPEG, stored on its side (orientation 6), with GPS and the camera's serial."""
    face = Image.open(io.BytesIO(face_of(person))).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to view
    exif[0xA431] = "SERIAL-12345"  # BodySerialNumber
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)})  # GPS
    out = io.BytesIO()
    face.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


async def test_an_uploaded_photo_is_stored_upright_without_its_metadata(world: GatewayWorld, alice) -> None:
    upload = phone_photo(3)
    assert b"SERIAL-12345" in upload
    response = await alice.post("/characters/upload-image", **form(upload, "IMG_0001.jpg", name="Pia"))
    assert response.status_code == 201, response.text
    stored = (await alice.get(f"/avatar/{response.json()['id']}")).content
    assert b"SERIAL-12345" not in stored and b"Exif" not in stored
    image = Image.open(io.BytesIO(stored))
    assert image.format == "JPEG" and not image.getexif()
    original = Image.open(io.BytesIO(face_of(3))).convert("RGB")

    def distance(other: Image.Image) -> float:
        return sum(ImageStat.Stat(ImageChops.difference(image.convert("RGB"), other)).mean) / 3

    # Turned back upright: the stored pixels are the face as it was, not as the phone stored it.
    assert distance(original) < 8 < distance(original.transpose(Image.Transpose.ROTATE_90))
    assert hashlib.sha256(stored).hexdigest() == response.json()["reference"]["sha256"]


async def test_a_photo_makes_a_character_that_only_its_owner_sees(world: GatewayWorld, alice, bob) -> None:
    photo = face_of(1)
    response = await alice.post("/characters/upload-image", **form(photo, name="Zoë Q.", gender="woman",
                                                                    personality="bold", art_style="anime"))
    assert response.status_code == 201, response.text
    mia = response.json()
    assert mia["id"].startswith("zo-q-") and mia["name"] == "Zoë Q." and mia["art_style"] == "anime"
    assert mia["has_reference"] is True and mia["builtin"] is False
    assert mia["reference"]["media_type"] == "image/png"
    assert world.facecheck.asked[-1] == mia["reference"]["sha256"]
    created = [e for e in world.chat.commands if e.type == "character.create"][-1]
    assert created.data["owner"] == await user_id(alice) and created.data["reference_image"] == mia["reference"]

    mine = {c["id"] for c in (await alice.get("/characters")).json()}
    theirs = {c["id"] for c in (await bob.get("/characters")).json()}
    assert {mia["id"], "ayla-test"} <= mine
    assert "ayla-test" in theirs and mia["id"] not in theirs

    avatar = await alice.get(f"/avatar/{mia['id']}")
    assert avatar.status_code == 200 and avatar.content == photo
    assert avatar.headers["content-type"] == "image/png" and avatar.headers["cache-control"].startswith("private")
    again = await alice.get(f"/avatar/{mia['id']}", headers={"If-None-Match": avatar.headers["etag"]})
    assert again.status_code == 304
    assert_error(await bob.get(f"/avatar/{mia['id']}"), 404, "character_not_found")
    placeholder = await bob.get("/avatar/ayla-test")
    assert placeholder.status_code == 200 and placeholder.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in placeholder.content


async def test_a_reference_is_set_on_a_builtin_and_on_ones_own_character(world: GatewayWorld, alice, bob) -> None:
    await world.chat.builtin("nora-test", "Nora")
    response = await bob.post("/characters/upload-image", **form(face_of(2), character_id="nora-test"))
    assert response.status_code == 200, response.text
    assert response.json()["has_reference"] is True
    mia = await create_character(alice, "Mia", 0)
    updated = await alice.post("/characters/upload-image", **form(face_of(3), character_id=mia["id"]))
    assert updated.status_code == 200 and updated.json()["reference"]["sha256"] != mia["reference"]["sha256"]
    assert_error(await bob.post("/characters/upload-image", **form(face_of(3), character_id=mia["id"])),
                 404, "character_not_found")
    assert_error(await bob.post("/characters/upload-image", **form(face_of(3), character_id="nobody-here")),
                 404, "character_not_found")


def noisy_jpeg(width: int, height: int) -> bytes:
    rng = random.Random(7)
    image = Image.frombytes("RGB", (width, height), bytes(rng.getrandbits(8) for _ in range(width * height * 3)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=30)
    return out.getvalue()


def bomb_png() -> bytes:
    out = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (100, 100), (200, 10, 10)).save(out, format="GIF")
    return out.getvalue()


@pytest.mark.parametrize(("make", "filename", "status", "code"), [
    (lambda: b"hello, I am text pretending", "face.png", 415, "unsupported_image"),
    (gif, "face.jpg", 415, "unsupported_image"),
    (lambda: face_of(0)[:2000], "face.png", 422, "damaged_image"),
    (lambda: png((10, 20, 30), size=32), "face.png", 422, "image_too_small"),
    (bomb_png, "face.png", 413, "decompression_bomb"),
    (lambda: noisy_jpeg(2100, 2100), "face.jpg", 413, "too_many_pixels"),
    (lambda: b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 * 1024), "face.png", 413, "file_too_large"),
    (lambda: b"", "face.png", 422, "empty_file"),
])
async def test_uploads_that_are_not_a_sane_photo_are_refused(world: GatewayWorld, alice, make, filename, status,
                                                            code) -> None:
    before = len(world.chat.commands)
    response = await alice.post("/characters/upload-image", **form(make(), filename, name="Bad"))
    assert_error(response, status, code)
    assert len(world.chat.commands) == before  # nothing was sent on


async def test_a_photo_without_a_face_is_refused(world: GatewayWorld, alice) -> None:
    photo = png((120, 160, 200), size=256)
    import hashlib

    world.facecheck.faceless.add(hashlib.sha256(photo).hexdigest())
    body = assert_error(await alice.post("/characters/upload-image", **form(photo, name="Nobody")), 422, "no_face")
    assert "no face found" in body["detail"]


async def test_malformed_upload_forms_are_refused(world: GatewayWorld, alice) -> None:
    assert_error(await alice.post("/characters/upload-image", json={"name": "x"}), 415, "multipart_required")
    assert_error(await alice.post("/characters/upload-image", data={"name": "x"}, files={"other": ("a", b"b")}),
                 422, "image_missing")
    assert_error(await alice.post("/characters/upload-image", **form(face_of(0))), 422, "name_missing")
    assert_error(await alice.post("/characters/upload-image", **form(face_of(0), name="X", art_style="cubist")),
                 422, "unknown_style")
    assert_error(await alice.post("/characters/upload-image", **form(face_of(0), name="X", gender="robot")),
                 422, "invalid_field")
    assert_error(await alice.post("/characters/upload-image", content=b"--x\r\nbroken",
                                  headers={"content-type": "multipart/form-data; boundary=x"}), 400, "bad_multipart")


async def test_an_upload_when_facecheck_is_down_says_so(world: GatewayWorld, alice) -> None:
    await world.facecheck.stop()
    try:
        assert_error(await alice.post("/characters/upload-image", **form(face_of(4), name="Late")),
                     503, "facecheck_unavailable")
    finally:
        await world.facecheck.start()


async def test_when_chat_does_not_answer_the_upload_times_out_clearly(world: GatewayWorld, alice) -> None:
    world.gateway.settings = world.gateway.settings.model_copy(update={"gateway_command_timeout_s": 1.0})
    world.chat.silent = True
    try:
        assert_error(await alice.post("/characters/upload-image", **form(face_of(4), name="Late")),
                     504, "chat_timeout")
    finally:
        world.chat.silent = False
        world.gateway.settings = world.settings


async def test_personas_are_read_by_anyone_who_sees_and_edited_by_the_owner(world: GatewayWorld, alice, bob) -> None:
    mia = await create_character(alice, "Mia")
    response = await alice.put(f"/characters/{mia['id']}/persona", json={"persona": "Mia flies.", "occupation": "ace"})
    assert response.status_code == 200, response.text
    assert response.json() == {"character_id": mia["id"], "name": "Mia", "persona": "Mia flies.",
                                    "personality": "", "occupation": "ace", "builtin": False, "editable": True}
    assert (await alice.get(f"/characters/{mia['id']}/persona")).json()["persona"] == "Mia flies."
    builtin = await bob.get("/characters/ayla-test/persona")
    assert builtin.status_code == 200 and builtin.json()["editable"] is True
    # A built-in's persona is adjusted for the one who adjusts it; everyone else keeps the shared one.
    mine = await bob.put("/characters/ayla-test/persona", json={"persona": "Ayla teases Bob.", "occupation": "pilot"})
    assert mine.status_code == 200, mine.text
    assert (mine.json()["persona"], mine.json()["occupation"], mine.json()["builtin"]) == (
        "Ayla teases Bob.", "pilot", True)
    assert (await bob.get("/characters/ayla-test/persona")).json()["persona"] == "Ayla teases Bob."
    assert (await alice.get("/characters/ayla-test/persona")).json()["persona"] == builtin.json()["persona"]
    assert_error(await bob.get(f"/characters/{mia['id']}/persona"), 404, "character_not_found")
    assert_error(await bob.put(f"/characters/{mia['id']}/persona", json={"persona": "x"}), 404, "character_not_found")
    assert_error(await alice.put(f"/characters/{mia['id']}/persona", json={"persona": "x" * 5000}), 422,
                 "invalid_request")


# -- chat -------------------------------------------------------------------------------------------


async def test_a_chat_reply_streams_token_by_token_then_whole(world: GatewayWorld, alice, bob) -> None:
    events = await chat(alice, character_id="ayla-test", text="hello there")
    kinds = [e for e, _ in events]
    assert kinds[0] == "accepted" and kinds[-1] == "reply" and kinds.count("delta") == 4
    reply = events[-1][1]
    assert reply["text"] == "You said: hello there"
    assert "".join(d["delta"] for e, d in events if e == "delta") == reply["text"]
    assert reply["offline"] is False and reply["chain_id"] is None and reply["model"] == "fake-model"
    conversation = reply["conversation_id"]
    sent = [e for e in world.chat.commands if e.type == "chat.send_message"][-1].open(REGISTRY)
    assert str(sent.conversation_id) == conversation and sent.user_id == await user_id(alice)

    again = await chat(alice, character_id="ayla-test", text="more", conversation_id=conversation)
    assert again[-1][1]["conversation_id"] == conversation
    # Someone else's conversation, or another character in this one.
    response = await bob.post("/chat/stream", json={"character_id": "ayla-test", "text": "hi",
                                                    "conversation_id": conversation})
    assert_error(response, 404, "conversation_not_found")
    await world.chat.builtin("nora-test", "Nora")
    response = await alice.post("/chat/stream", json={"character_id": "nora-test", "text": "hi",
                                                      "conversation_id": conversation})
    assert_error(response, 409, "other_character")
    assert_error(await alice.post("/chat/stream", json={"character_id": "nobody-here", "text": "hi"}), 404,
                 "character_not_found")
    assert_error(await alice.post("/chat/stream", json={"character_id": "ayla-test", "text": ""}), 422,
                 "invalid_request")


async def test_a_chat_message_asking_for_a_picture_links_the_chain(world: GatewayWorld, alice, bob) -> None:
    events = await chat(alice, character_id="ayla-test", text="send me a picture at the beach")
    image = next(d for e, d in events if e == "image")
    reply = events[-1][1]
    assert reply["chain_id"] == image["chain_id"] and reply["events_url"] == f"/chains/{image['chain_id']}/events"
    # The chain is hers at once, before the planner has recorded it (the fake chat's chain never starts).
    job = await alice.get(f"/chat/job/{image['chain_id']}")
    assert job.status_code == 200 and job.json()["status"] == "queued", job.text
    assert job.json()["request_text"] == "send me a picture at the beach"
    assert_error(await bob.get(f"/chat/job/{image['chain_id']}"), 404, "chain_not_found")


async def test_a_refused_chat_message_ends_the_stream_with_an_error(world: GatewayWorld, alice) -> None:
    world.chat.refuse_chat = "chat.unknown_character"
    try:
        events = await chat(alice, character_id="ayla-test", text="hi")
    finally:
        world.chat.refuse_chat = None
    assert events[-1] == ("error", {"error": "chat.unknown_character", "detail": "refused by the fake"})


async def test_cost_counts_tokens_and_money_per_model_for_the_user_and_overall(world: GatewayWorld, alice,
                                                                              bob) -> None:
    before = (await alice.get("/cost")).json()
    await chat(alice, character_id="ayla-test", text="one two three")
    world.chat.usage_reported = False
    try:
        await chat(alice, character_id="ayla-test", text="four five six")
    finally:
        world.chat.usage_reported = True
    after = (await alice.get("/cost")).json()
    words = len(["You", "said:", "one", "two", "three"])
    mine = {m["model"]: m for m in after["user"]["models"]}["fake-model"]
    earlier = {m["model"]: m for m in before["user"]["models"]}.get(
        "fake-model", {"replies": 0, "prompt_tokens": 0, "completion_tokens": 0, "estimated_replies": 0})
    assert mine["replies"] == earlier["replies"] + 2
    assert mine["estimated_replies"] == earlier["estimated_replies"] + 1
    assert mine["prompt_tokens"] - earlier["prompt_tokens"] == 2 * 10 * words
    assert mine["completion_tokens"] - earlier["completion_tokens"] == 2 * words
    assert after["overall"]["total"]["replies"] >= after["user"]["total"]["replies"]
    assert (await bob.get("/cost")).json()["user"] == {"models": [], "total": {
        "replies": 0, "offline_replies": 0, "estimated_replies": 0, "prompt_tokens": 0, "completion_tokens": 0,
        "total_tokens": 0, "cost_usd": 0.0}}


async def test_cost_counts_the_planners_model_calls_per_chain_next_to_chat(world: GatewayWorld, alice,
                                                                           bob) -> None:
    before = (await alice.get("/cost")).json()
    usage = ModelUsage(model="grok-4-fast-non-reasoning", calls=2, prompt_tokens=900, completion_tokens=120,
                       cost_usd=0.00024, tokens_estimated=True)
    script = world.chain(user_id=await user_id(alice), character_id="ayla-test",
                         reference=await world.blobs.put_image(png((10, 20, 30))), steps=1, llm_usage=usage)
    await script.finish()
    after = (await alice.get("/cost")).json()

    def planned(report: dict) -> dict:
        return {m["model"]: m for m in report["planning"]["user"]["models"]}.get(
            usage.model, {"plans": 0, "calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                          "estimated_plans": 0})

    grew = {key: planned(after)[key] - planned(before)[key]
            for key in ("plans", "calls", "prompt_tokens", "completion_tokens", "estimated_plans")}
    assert grew == {"plans": 1, "calls": 2, "prompt_tokens": 900, "completion_tokens": 120, "estimated_plans": 1}
    assert round(planned(after)["cost_usd"] - planned(before)["cost_usd"], 8) == 0.00024
    assert after["total_cost_usd"]["user"] == round(after["user"]["total"]["cost_usd"]
                                                    + after["planning"]["user"]["total"]["cost_usd"], 6)
    assert after["planning"]["overall"]["total"]["plans"] >= after["planning"]["user"]["total"]["plans"]
    # Alice's chain is hers alone.
    assert usage.model not in {m["model"] for m in (await bob.get("/cost")).json()["planning"]["user"]["models"]}


# -- picture jobs -----------------------------------------------------------------------------------


async def test_a_picture_job_is_queued_then_follows_its_chain(world: GatewayWorld, alice, bob,
                                                              requests_seen) -> None:
    mia = await create_character(alice, "Mia")
    response = await alice.post("/chat/generate-image", json={"character_id": mia["id"], "request": "at the beach"})
    assert response.status_code == 202, response.text
    job = response.json()
    job_id = job["job_id"]
    assert job["chain_id"] == job_id and job["status"] == "queued" and job["events_url"] == f"/chains/{job_id}/events"
    await asyncio.sleep(0.2)
    request = next(e for e in requests_seen if e.data["chain_id"] == job_id).open(REGISTRY)
    assert request.user_id == await user_id(alice) and request.request_text == "at the beach"
    assert request.reference_image.model_dump() == mia["reference"] and request.character_id == mia["id"]

    status = (await alice.get(f"/chat/job/{job_id}")).json()
    assert status["status"] == "queued" and status["result"] is None
    assert_error(await bob.get(f"/chat/job/{job_id}"), 404, "chain_not_found")
    assert_error(await bob.get(f"/wait/{job_id}?timeout=0.1"), 404, "chain_not_found")

    script = world.chain(chain_id=uuid.UUID(job_id), user_id=request.user_id, character_id=mia["id"],
                         reference=request.reference_image, steps=2)
    await script.advance(3)
    running = (await alice.get(f"/chat/job/{job_id}")).json()
    assert running["status"] == "running" and running["progress"]["steps_total"] == 2
    assert running["progress"]["step"] == 0

    waiting = asyncio.ensure_future(alice.get(f"/wait/{job_id}?timeout=20"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await script.finish()
    done = (await waiting).json()
    assert done["status"] == "completed" and done["done"] is True and done["progress"]["fraction"] == 1.0
    final = script.images[-1]
    assert done["result"]["sha256"] == final.sha256 and done["image_url"] == f"/images/{final.sha256}"
    picture = await alice.get(done["image_url"])
    assert picture.status_code == 200 and picture.content == await world.blobs.get(final.sha256)
    assert picture.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert (await alice.get(done["image_url"], headers={"If-None-Match": picture.headers["etag"]})).status_code == 304
    thumb = await alice.get(done["image_url"], params={"thumb": 1})
    assert thumb.headers["content-type"] == "image/webp" and thumb.content[8:12] == b"WEBP"
    assert_error(await bob.get(done["image_url"]), 404, "image_not_found")
    assert_error(await bob.get(done["image_url"], params={"thumb": 1}), 404, "image_not_found")

    gallery = (await alice.get("/me/images")).json()
    mine = [g for g in gallery if g["chain_id"] == job_id]
    assert {(g["role"], g["step"]) for g in mine} == {("final", None), ("step", 0), ("step", 1)}
    assert all(g["thumb_url"] == f"/images/{g['sha256']}?thumb=1" for g in mine)
    assert not [g for g in (await bob.get("/me/images")).json() if g["chain_id"] == job_id]


async def test_wait_returns_when_its_timeout_passes(world: GatewayWorld, alice) -> None:
    mia = await create_character(alice, "Mia")
    job = (await alice.post("/chat/generate-image", json={"character_id": mia["id"], "request": "x"})).json()
    started = asyncio.get_running_loop().time()
    body = (await alice.get(f"/wait/{job['job_id']}", params={"timeout": 0.5})).json()
    assert body["status"] == "queued" and asyncio.get_running_loop().time() - started >= 0.45


async def test_picture_requests_that_cannot_be_made_are_refused(world: GatewayWorld, alice) -> None:
    await world.chat.builtin("plain-test", "Plain")
    assert_error(await alice.post("/chat/generate-image", json={"character_id": "plain-test", "request": "x"}),
                 409, "no_reference")
    assert_error(await alice.post("/chat/generate-image", json={"character_id": "nobody-here", "request": "x"}),
                 404, "character_not_found")
    assert_error(await alice.post("/chat/generate-image", json={"character_id": "Bad Id!", "request": "x"}),
                 422, "invalid_request")
    assert_error(await alice.post("/chat/generate-image", json={"character_id": "plain-test"}), 422,
                 "invalid_request")
    assert_error(await alice.post("/chat/generate-image", content=b"{not json",
                                  headers={"content-type": "application/json"}), 422, "invalid_request")


async def test_an_anonymous_session_is_limited_until_it_logs_in(world: GatewayWorld) -> None:
    async with world.client() as carol:
        mia = await create_character(carol, "Mia")
        for _ in range(ANON_LIMIT):
            response = await carol.post("/chat/generate-image", json={"character_id": mia["id"], "request": "x"})
            assert response.status_code == 202, response.text
        body = assert_error(await carol.post("/chat/generate-image", json={"character_id": mia["id"], "request": "x"}),
                            403, "login_required")
        assert "log in" in body["detail"] and "/auth/signup" in body["detail"]
        me = (await carol.get("/me")).json()
        assert me["kind"] == "anonymous" and me["images_left"] == 0
        anonymous_id = me["user_id"]

        signed = await carol.post("/auth/signup")
        assert signed.status_code == 201, signed.text
        key = signed.json()["api_key"]
        assert signed.json()["user_id"] == anonymous_id  # her pictures stay hers
        response = await carol.post("/chat/generate-image", json={"character_id": mia["id"], "request": "x"})
        assert response.status_code == 202, response.text
        me = (await carol.get("/me")).json()
        assert (me["kind"], me["image_limit"]) == ("registered", None)

    async with world.client(headers={"Authorization": f"Bearer {key}"}) as program:
        me = (await program.get("/me")).json()
        assert me["user_id"] == anonymous_id and me["kind"] == "registered" and me["image_limit"] is None
        assert (await program.get(f"/characters/{mia['id']}/persona")).status_code == 200


async def test_api_keys_and_logins(world: GatewayWorld) -> None:
    async with world.client() as fresh:
        signed = (await fresh.post("/auth/signup")).json()
    assert signed["user_id"].startswith("anon-") or signed["user_id"].startswith("u-")
    async with world.client(headers={"Authorization": f"Bearer {signed['api_key']}"}) as program:
        assert (await program.get("/me")).json()["user_id"] == signed["user_id"]
    async with world.client(headers={"Authorization": "Bearer lk_not-a-key"}) as wrong:
        response = await wrong.get("/me")
        assert_error(response, 401, "invalid_api_key")
        assert response.headers["www-authenticate"] == "Bearer"
    async with world.client(headers={"Authorization": "Basic abc"}) as wrong:
        assert_error(await wrong.get("/me"), 401, "invalid_authorization")
    async with world.client() as browser:
        assert_error(await browser.post("/auth/login", json={"api_key": "lk_wrong-key-123"}), 401, "invalid_api_key")
        response = await browser.post("/auth/login", json={"api_key": signed["api_key"]})
        assert response.status_code == 200 and response.json()["user_id"] == signed["user_id"]
        assert "httponly" in response.headers["set-cookie"].lower()
        assert (await browser.get("/me")).json()["user_id"] == signed["user_id"]
        assert (await browser.post("/auth/logout")).status_code == 204
        assert (await browser.get("/me")).json()["user_id"] != signed["user_id"]


async def test_the_page_comes_with_its_session_so_its_parallel_first_calls_are_one_user(world: GatewayWorld) -> None:
    async with world.client() as browser:
        page = await browser.get("/")
        assert page.status_code == 200 and "likeness_session=" in page.headers["set-cookie"]
        # The page's first calls go out together: with the page's cookie they are all the same anonymous user.
        ids = await asyncio.gather(*(user_id(browser) for _ in range(4)))
        assert len(set(ids)) == 1 and ids[0].startswith("anon-")


async def test_a_forged_session_cookie_is_a_new_anonymous_session(world: GatewayWorld, alice) -> None:
    victim = await user_id(alice)
    async with world.client(cookies={"likeness_session": f"{victim}.9999999999.forged"}) as mallory:
        assert await user_id(mallory) != victim


async def test_requests_over_the_rate_limit_get_429(world: GatewayWorld, alice) -> None:
    await alice.get("/me")
    limiter = world.gateway.limiter
    world.gateway.limiter = RateLimiter(0.5, 2)
    try:
        statuses = [(await alice.get("/me")).status_code for _ in range(3)]
        response = await alice.get("/me")
    finally:
        world.gateway.limiter = limiter
    assert statuses[:2] == [200, 200]
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1


async def test_errors_are_json_and_the_api_is_documented(world: GatewayWorld, alice) -> None:
    assert_error(await alice.get("/no/such/thing"), 404, "not_found")
    assert_error(await alice.get("/chat/job/not-a-uuid"), 422, "invalid_request")
    assert_error(await alice.delete("/characters"), 405, "method_not_allowed")
    assert_error(await alice.get("/images/abc"), 404, "image_not_found")
    docs = await alice.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = (await alice.get("/openapi.json")).json()["paths"]
    for path in ("/characters", "/characters/upload-image", "/chat/stream", "/chat/generate-image",
                 "/chat/job/{job_id}", "/wait/{job_id}", "/chains/{chain_id}/events", "/me/tree", "/cost"):
        assert path in paths
    models = (await alice.get("/models")).json()
    styles = (await alice.get("/styles")).json()
    assert "qwen-image-edit" in {m["name"] for m in models}
    assert [s["name"] for s in styles if s["default"]] == ["photoreal"]
    page = await alice.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
