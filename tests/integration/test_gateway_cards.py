"""Character cards through the gateway over real NATS and Postgres: importing a SillyTavern card as a
character of one's own (its picture as the reference when it shows one face), exporting a character as a
card, and the 4xx answers that name what is wrong with a card.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image, ImageChops
from PIL.PngImagePlugin import PngInfo

from services.gateway.character_cards import read_card, to_character
from services.gateway.uploads import clean_photo
from tests.conftest import Backends
from tests.faces import face_of, no_face_image, two_faces_image
from tests.fakes.gateway_world import GatewayWorld
from tests.integration.gateway_helpers import assert_error, create_character, form

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MAX_BYTES = 2 * 1024 * 1024
BAKER = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
    "name": "Kai", "description": "{{char}} runs a night bakery.", "personality": "warm, blunt",
    "scenario": "{{user}} walks in at 3 am.", "first_mes": "You again?", "mes_example": "<START>",
    "creator_notes": "", "system_prompt": "", "post_history_instructions": "", "alternate_greetings": [],
    "tags": ["baker"], "creator": "someone", "character_version": "1", "extensions": {}}}
BAKER_PERSONA = "Kai runs a night bakery.\n\nScenario: the user walks in at 3 am.\n\nKai's first message: You again?"


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_command_timeout_s=5.0,
                               gateway_upload_max_bytes=MAX_BYTES, gateway_upload_max_pixels=4_000_000).start()
    yield world
    await world.close()


def card_png(document: dict, picture: bytes, chunk: str = "chara") -> bytes:
    """A card as SillyTavern writes one: the picture with the card's JSON, base64, in a text chunk."""
    info = PngInfo()
    info.add_text(chunk, base64.b64encode(json.dumps(document).encode()).decode())
    out = io.BytesIO()
    Image.open(io.BytesIO(picture)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def card_form(card: bytes, filename: str = "card.png", photo: bytes | None = None, **fields: str) -> dict:
    files = {"card": (filename, card, "application/octet-stream")}
    if photo is not None:
        files["photo"] = ("photo.png", photo, "image/png")
    return {"files": files, "data": fields}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def persona(client: httpx.AsyncClient, character_id: str) -> dict:
    response = await client.get(f"/characters/{character_id}/persona")
    assert response.status_code == 200, response.text
    return response.json()


async def listed(client: httpx.AsyncClient) -> set[str]:
    return {c["id"] for c in (await client.get("/characters")).json()}


async def test_a_png_card_showing_a_face_becomes_a_character_with_its_persona_and_picture(
        world: GatewayWorld, alice, bob) -> None:
    raw = card_png(BAKER, face_of(1))
    response = await alice.post("/characters/import-card", **card_form(raw, "kai.png", gender="man"))
    assert response.status_code == 201, response.text
    kai = response.json()
    assert kai["name"] == "Kai" and kai["gender"] == "man" and kai["personality"] == "warm, blunt"
    assert kai["builtin"] is False and kai["has_reference"] is True
    assert kai["notes"] == ["Not used by Likeness: the card's mes_example."]
    # The reference is the card's picture without the card in it, face-checked like an upload.
    stored = (await alice.get(f"/avatar/{kai['id']}")).content
    assert kai["reference"]["sha256"] == sha256(stored) == sha256(clean_photo(raw))
    assert b"chara" not in stored
    assert world.facecheck.asked[-1] == kai["reference"]["sha256"]
    assert (await persona(alice, kai["id"]))["persona"] == BAKER_PERSONA
    created = [e for e in world.chat.commands if e.type == "character.create"][-1]
    assert created.data["character_id"] == kai["id"] and created.data["persona"] == BAKER_PERSONA
    assert kai["id"] in await listed(alice) and kai["id"] not in await listed(bob)


async def test_a_ccv3_card_is_read_and_our_own_extension_gives_occupation_and_style(world: GatewayWorld,
                                                                                      alice) -> None:
    v3 = {"spec": "chara_card_v3", "spec_version": "3.0", "data": {
        "name": "Ren", "description": "A pilot.", "group_only_greetings": [],
        "extensions": {"likeness": {"occupation": "pilot", "gender": "woman", "art_style": "anime"}}}}
    response = await alice.post("/characters/import-card", **card_form(card_png(v3, face_of(3), "ccv3")))
    assert response.status_code == 201, response.text
    ren = response.json()
    assert (ren["occupation"], ren["gender"], ren["art_style"], ren["notes"]) == ("pilot", "woman", "anime", [])


async def test_a_json_card_with_a_photo(world: GatewayWorld, alice) -> None:
    photo = face_of(2)
    response = await alice.post("/characters/import-card", **card_form(
        json.dumps(BAKER).encode(), "kai.json", photo=photo, art_style="watercolor"))
    assert response.status_code == 201, response.text
    kai = response.json()
    assert kai["has_reference"] is True and kai["reference"]["sha256"] == sha256(photo)
    assert kai["art_style"] == "watercolor" and kai["gender"] == "other"
    assert (await persona(alice, kai["id"]))["persona"] == BAKER_PERSONA


async def test_a_card_without_a_usable_face_makes_a_character_without_a_reference_and_says_so(
        world: GatewayWorld, alice) -> None:
    faceless = card_png(BAKER, no_face_image())
    world.facecheck.faceless.add(sha256(clean_photo(faceless)))
    crowd = card_png(BAKER, two_faces_image())
    world.facecheck.crowds[sha256(clean_photo(crowd))] = 2
    for raw, why in ((faceless, "shows no face"), (crowd, "shows several faces"),
                     (json.dumps(BAKER).encode(), "is missing (the card is a JSON file)")):
        response = await alice.post("/characters/import-card", **card_form(raw))
        assert response.status_code == 201, response.text
        kai = response.json()
        assert kai["has_reference"] is False and kai["reference"] is None
        assert any(why in note and "no reference photo yet" in note for note in kai["notes"]), kai["notes"]
        assert (await persona(alice, kai["id"]))["persona"] == BAKER_PERSONA
        assert (await alice.get(f"/avatar/{kai['id']}")).headers["content-type"].startswith("image/svg+xml")


async def test_a_photo_sent_with_a_card_must_be_a_face(world: GatewayWorld, alice) -> None:
    photo = no_face_image(300)
    world.facecheck.faceless.add(sha256(photo))
    before = await listed(alice)
    assert_error(await alice.post("/characters/import-card", **card_form(card_png(BAKER, face_of(0)), photo=photo)),
                 422, "no_face")
    assert await listed(alice) == before


async def test_a_character_exports_as_a_png_and_a_json_card_that_import_back(world: GatewayWorld, alice,
                                                                             bob) -> None:
    mia = await create_character(alice, "Mia Ø", person=4)
    await alice.put(f"/characters/{mia['id']}/persona", json={"persona": "Mia flies seaplanes.",
                                                               "personality": "steady"})
    png = await alice.get(f"/characters/{mia['id']}/card?format=png")
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    assert png.headers["content-disposition"] == ("attachment; filename=\"Mia.png\"; "
                                                  "filename*=UTF-8''Mia%20%C3%98.png")
    card = read_card(png.content)
    assert card.spec == "chara_card_v3"
    chunks = Image.open(io.BytesIO(png.content)).text
    assert json.loads(base64.b64decode(chunks["chara"]))["spec"] == "chara_card_v2"
    made = to_character(card)
    assert (made.name, made.persona, made.personality, made.occupation, made.gender, made.art_style) == (
        "Mia Ø", "Mia flies seaplanes.", "steady", "pilot", "woman", "photoreal")
    avatar = Image.open(io.BytesIO((await alice.get(f"/avatar/{mia['id']}")).content)).convert("RGB")
    assert ImageChops.difference(Image.open(io.BytesIO(png.content)).convert("RGB"), avatar).getbbox() is None

    as_json = await alice.get(f"/characters/{mia['id']}/card?format=json")
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    assert as_json.headers["content-disposition"].startswith('attachment; filename="Mia.json"')
    assert as_json.json()["spec"] == "chara_card_v2" and as_json.json()["data"]["description"] == made.persona

    # Bob imports Alice's card: the same character, his own, with her picture as its reference.
    again = await bob.post("/characters/import-card", **card_form(png.content, "Mia.png"))
    assert again.status_code == 201, again.text
    copy = again.json()
    assert copy["id"] != mia["id"] and copy["notes"] == []
    assert {k: copy[k] for k in ("name", "gender", "personality", "occupation", "art_style")} == {
        "name": "Mia Ø", "gender": "woman", "personality": "steady", "occupation": "pilot", "art_style": "photoreal"}
    assert copy["reference"]["sha256"] == sha256(clean_photo(png.content))
    assert (await persona(bob, copy["id"]))["persona"] == "Mia flies seaplanes."


async def test_export_needs_a_visible_character_and_a_photo_for_png(world: GatewayWorld, alice, bob) -> None:
    mia = await create_character(alice, "Mia", person=0)
    assert_error(await bob.get(f"/characters/{mia['id']}/card"), 404, "character_not_found")
    assert_error(await bob.get("/characters/nobody-here/card?format=json"), 404, "character_not_found")
    assert_error(await alice.get(f"/characters/{mia['id']}/card?format=gif"), 422, "invalid_request")

    bare = (await alice.post("/characters/import-card", **card_form(json.dumps(BAKER).encode()))).json()
    body = assert_error(await alice.get(f"/characters/{bare['id']}/card?format=png"), 409, "no_reference")
    assert "format=json" in body["detail"]
    assert (await alice.get(f"/characters/{bare['id']}/card?format=json")).status_code == 200

    # A built-in character's card carries the caller's own reference photo, and nobody else's.
    nora = f"nora-{uuid.uuid4().hex[:8]}"
    await world.chat.builtin(nora, "Nora")
    await world.gateway.projector.sync()
    given = await alice.post("/characters/upload-image", **form(face_of(5), character_id=nora))
    assert given.status_code == 200, given.text
    card = await alice.get(f"/characters/{nora}/card")
    assert card.status_code == 200, card.text
    assert to_character(read_card(card.content)).persona == "Nora is kind."
    theirs = Image.open(io.BytesIO(face_of(5))).convert("RGB")
    assert ImageChops.difference(Image.open(io.BytesIO(card.content)).convert("RGB"), theirs).getbbox() is None
    assert_error(await bob.get(f"/characters/{nora}/card"), 409, "no_reference")
    assert (await bob.get(f"/characters/{nora}/card?format=json")).json()["data"]["name"] == "Nora"


async def test_a_wrong_card_is_a_4xx_naming_the_problem_and_makes_nothing(world: GatewayWorld) -> None:
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(face_of(0))).convert("RGB").save(jpeg, format="JPEG")
    plain = io.BytesIO()
    Image.open(io.BytesIO(face_of(0))).save(plain, format="PNG")
    wrong = [
        (card_form(jpeg.getvalue(), "card.jpg"), 415, "unsupported_card"),
        (card_form(b"name: Kai\n", "card.txt"), 415, "unsupported_card"),
        (card_form(plain.getvalue()), 422, "card_chunk_missing"),
        (card_form(b'{"spec": "chara_card_v2", "data": {"name": "Kai",'), 422, "card_not_json"),
        (card_form(json.dumps({**BAKER, "spec": "tavern_v7"}).encode()), 422, "card_unknown_spec"),
        (card_form(json.dumps({**BAKER, "data": {**BAKER["data"], "name": ""}}).encode()), 422, "card_name_missing"),
        (card_form(json.dumps({**BAKER, "data": {**BAKER["data"], "tags": "a"}}).encode()), 422,
         "card_invalid_field"),
        (card_form(json.dumps({**BAKER, "data": {**BAKER["data"], "description": "a\u0000"}}).encode()), 422,
         "card_invalid_field"),
        (card_form(json.dumps({**BAKER, "data": {**BAKER["data"], "name": "K" * 101}}).encode()), 422,
         "card_field_too_long"),
        (card_form(b"\x89PNG\r\n\x1a\n" + bytes(200)), 422, "damaged_image"),
        (card_form(json.dumps(BAKER).encode(), gender="robot"), 422, "invalid_field"),
        (card_form(json.dumps(BAKER).encode(), art_style="cubism"), 422, "unknown_style"),
        ({"files": {"image": ("card.json", json.dumps(BAKER).encode(), "application/json")}}, 422, "card_missing"),
        ({"json": BAKER}, 415, "multipart_required"),
        (card_form(b" " * (MAX_BYTES + 1), "big.json"), 413, "file_too_large"),
    ]
    async with world.client() as carol:
        before = await listed(carol)
        for request, status, code in wrong:
            assert_error(await carol.post("/characters/import-card", **request), status, code)
        assert await listed(carol) == before
