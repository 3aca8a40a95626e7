"""Character cards, pure: reading V1, V2 and V3 cards from JSON and PNG, what they become, writing them back,
and the error that names each way a card can be wrong."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image, ImageChops
from PIL.PngImagePlugin import PngInfo

from services.gateway.character_cards import (
    PERSONA_MAX,
    CardCharacter,
    build_card,
    card_json,
    card_png,
    read_card,
    to_character,
)
from services.gateway.errors import GatewayError
from tests.faces import face_of

MIRA = CardCharacter(name="Mira Ø", persona="Mira paints harbours at dawn and talks about light.",
                     personality="calm, curious", occupation="painter", gender="woman", art_style="watercolor")


def picture(size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), (200, 120, 40))


def png_with(chunks: dict[str, str], image: Image.Image | None = None) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    out = io.BytesIO()
    (image or picture()).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def encoded(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def v2(**data: object) -> dict:
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Kai", **data}}


def refused(raw: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        read_card(raw)
    return caught.value


def text_chunks(raw: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(raw)) as image:
        return dict(image.text)


# -- round trips --------------------------------------------------------------------------------------


def test_a_json_card_reads_back_as_the_character_it_was_made_of() -> None:
    card = read_card(card_json(MIRA))
    assert card.spec == "chara_card_v2" and card.picture is None
    assert to_character(card) == MIRA


def test_a_png_card_carries_v2_in_chara_and_v3_in_ccv3_on_the_unchanged_picture() -> None:
    source = face_of(0)
    raw = card_png(MIRA, source)
    chunks = text_chunks(raw)
    assert json.loads(base64.b64decode(chunks["chara"])) == build_card(MIRA)
    v3 = json.loads(base64.b64decode(chunks["ccv3"]))
    assert v3["spec"] == "chara_card_v3" and v3["spec_version"] == "3.0"
    assert v3["data"] == {**build_card(MIRA)["data"], "group_only_greetings": []}
    card = read_card(raw)
    assert card.spec == "chara_card_v3" and card.picture == raw
    assert to_character(card) == MIRA
    with Image.open(io.BytesIO(raw)) as made, Image.open(io.BytesIO(source)) as original:
        assert ImageChops.difference(made.convert("RGB"), original.convert("RGB")).getbbox() is None


def test_a_jpeg_reference_becomes_a_png_card() -> None:
    out = io.BytesIO()
    picture().save(out, format="JPEG")
    raw = card_png(MIRA, out.getvalue())
    assert raw.startswith(b"\x89PNG") and to_character(read_card(raw)) == MIRA


def test_a_v2_card_exported_elsewhere_becomes_a_persona_within_the_limit() -> None:
    card = v2(description="{{char}} runs a night bakery and teases {{user}}.", personality="warm, blunt",
              scenario="<USER> walks in at 3 am.", first_mes="*dusts flour off* You again?",
              mes_example="<START>", alternate_greetings=["Hi"], tags=["baker"], extensions={"other": {"x": 1}})
    made = to_character(read_card(json.dumps(card).encode()))
    assert made.name == "Kai" and made.personality == "warm, blunt" and made.occupation == ""
    assert made.gender is None and made.art_style is None
    assert made.persona == ("Kai runs a night bakery and teases the user.\n\nScenario: the user walks in at 3 am."
                            "\n\nKai's first message: *dusts flour off* You again?")
    assert made.notes == ("Not used by Likeness: the card's mes_example, alternate_greetings.",)


def test_a_long_personality_goes_into_the_persona() -> None:
    long = "loyal " * 60
    made = to_character(read_card(json.dumps(v2(description="A knight.", personality=long)).encode()))
    assert made.personality == ""
    assert made.persona == f"A knight.\n\nPersonality: {long.strip()}"


def test_what_does_not_fit_the_persona_limit_is_left_out_and_said() -> None:
    description = "word " * (PERSONA_MAX // 5 + 100)
    made = to_character(read_card(json.dumps(v2(description=description, scenario="A tavern.")).encode()))
    assert len(made.persona) <= PERSONA_MAX and made.persona.endswith("word…")
    assert "description (shortened), scenario" in made.notes[0]

    # A later, shorter section still fits after a longer one is left out.
    fits = "x" * (PERSONA_MAX - 40)
    made = to_character(read_card(json.dumps(v2(description=fits, scenario="a scenario far too long to fit in here",
                                                  first_mes="Hi")).encode()))
    assert made.persona == f"{fits}\n\nKai's first message: Hi"
    assert "scenario did not fit" in made.notes[0]


def test_a_v1_card_is_its_bare_fields() -> None:
    card = read_card(json.dumps({"name": "Old Tom", "description": "A sailor.", "personality": "gruff",
                                 "scenario": "", "first_mes": "", "mes_example": ""}).encode())
    assert card.spec == "chara_card_v1"
    assert to_character(card) == CardCharacter(name="Old Tom", persona="A sailor.", personality="gruff")


def test_a_v3_card_and_nulls_for_absent_fields() -> None:
    card = {"spec": "chara_card_v3", "spec_version": "3.0",
            "data": {"name": " Ren ", "description": "A pilot.", "personality": None, "tags": None,
                     "group_only_greetings": [], "nickname": "R", "creation_date": 1700000000}}
    made = to_character(read_card(json.dumps(card).encode()))
    assert made == CardCharacter(name="Ren", persona="A pilot.")


def test_ccv3_is_preferred_over_chara_and_chara_alone_is_read() -> None:
    both = png_with({"chara": encoded(v2(description="from chara")),
                     "ccv3": encoded({"spec": "chara_card_v3", "spec_version": "3.0",
                                      "data": {"name": "Kai", "description": "from ccv3"}})})
    assert to_character(read_card(both)).persona == "from ccv3"
    alone = png_with({"chara": encoded(v2(description="from chara"))})
    assert to_character(read_card(alone)).persona == "from chara"


def test_base64_without_padding_and_a_json_file_with_a_bom_are_read() -> None:
    unpadded = encoded(v2(description="ab")).rstrip("=")
    assert to_character(read_card(png_with({"chara": unpadded}))).persona == "ab"
    assert read_card(b"\xef\xbb\xbf" + json.dumps(v2()).encode()).data["name"] == "Kai"


def test_our_extension_is_used_only_when_it_is_valid() -> None:
    card = v2(extensions={"likeness": {"gender": "alien", "occupation": "x" * 500, "art_style": 3}})
    made = to_character(read_card(json.dumps(card).encode()))
    assert (made.gender, made.occupation, made.art_style) == (None, "", None)


# -- every way a card is wrong --------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "status", "code", "says"), [
    (b"GIF89a not a card", 415, "unsupported_card", "PNG"),
    (b"\xff\xd8\xff\xe0 a jpeg", 415, "unsupported_card", "JSON"),
    (b"", 415, "unsupported_card", "neither"),
    (b'{"name": "Kai",', 422, "card_not_json", "the file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), 422, "damaged_image", "damaged"),
    (json.dumps([1, 2]).encode(), 422, "card_invalid_field", "not a list"),
    (json.dumps({"spec": "chara_card_v9", "data": {"name": "Kai"}}).encode(), 422, "card_unknown_spec",
     "chara_card_v9"),
    (json.dumps({"spec": "chara_card_v2", "data": "Kai"}).encode(), 422, "card_invalid_field", "`data`"),
    (json.dumps({"spec": "chara_card_v2"}).encode(), 422, "card_invalid_field", "`data`"),
    (json.dumps(v2(name="")).encode(), 422, "card_name_missing", "`name`"),
    (json.dumps(v2(name="   ")).encode(), 422, "card_name_missing", "`name`"),
    (json.dumps({"description": "no name"}).encode(), 422, "card_name_missing", "`name`"),
    (json.dumps(v2(name="K" * 101)).encode(), 422, "card_field_too_long", "at most 100"),
    (json.dumps(v2(description=5)).encode(), 422, "card_invalid_field", "`description` must be text, not a number"),
    (json.dumps(v2(name=["Kai"])).encode(), 422, "card_invalid_field", "`name` must be text, not a list"),
    (json.dumps(v2(tags="a,b")).encode(), 422, "card_invalid_field", "`tags` must be a list of texts"),
    (json.dumps(v2(alternate_greetings=["hi", 2])).encode(), 422, "card_invalid_field", "`alternate_greetings`"),
    (json.dumps(v2(extensions=[])).encode(), 422, "card_invalid_field", "`extensions` must be an object"),
    (json.dumps(v2(description="a\u0000b")).encode(), 422, "card_invalid_field", "NUL"),
])
def test_a_wrong_card_is_refused_naming_the_problem(raw: bytes, status: int, code: str, says: str) -> None:
    error = refused(raw)
    assert (error.status, error.code) == (status, code)
    assert says in error.detail


def test_a_png_without_a_card_chunk_is_a_picture_not_a_card() -> None:
    error = refused(png_with({"Comment": "just a photo"}))
    assert (error.status, error.code) == (422, "card_chunk_missing")
    assert "`chara` or `ccv3`" in error.detail


@pytest.mark.parametrize(("chunk", "value", "code"), [
    ("chara", "not base64 at all!", "card_not_base64"),
    ("ccv3", base64.b64encode(b"not json").decode(), "card_not_json"),
    ("chara", base64.b64encode(b"\xff\xfe{}").decode(), "card_not_json"),
])
def test_a_card_chunk_that_cannot_be_read_is_named(chunk: str, value: str, code: str) -> None:
    error = refused(png_with({chunk: value}))
    assert (error.status, error.code) == (422, code)
    assert f"`{chunk}`" in error.detail


def test_a_broken_ccv3_chunk_is_refused_even_when_chara_is_fine() -> None:
    # The V3 chunk is the card; a writer that broke it should hear so rather than get the older V2 copy.
    error = refused(png_with({"chara": encoded(v2()), "ccv3": "%%%"}))
    assert error.code == "card_not_base64" and "`ccv3`" in error.detail
