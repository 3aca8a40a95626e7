"""SillyTavern character cards: read one (V1, V2, V3; a JSON file or a PNG carrying it), turn it into a
Likeness character, and write one of a character (V2 JSON, or a PNG with V2 in `chara` and V3 in `ccv3`).

Pure: bytes in, bytes out. Every problem is a gateway error naming it (415 not a PNG or JSON file,
422 for a card that cannot be read or says something invalid), so the HTTP edge only passes them on.
The card formats: github.com/malfoyslastname/character-card-spec-v2, github.com/kwaroran/character-card-spec-v3.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from contracts import CreateCharacter
from services.gateway.errors import PayloadTooLarge, Unprocessable, UnsupportedMedia
from services.gateway.text_guard import unstorable

__all__ = ["Card", "CardCharacter", "build_card", "card_json", "card_png", "read_card", "to_character"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SPECS = {"chara_card_v2": "2.0", "chara_card_v3": "3.0"}
# Readers take ccv3 over chara when a PNG has both (the V3 spec says so).
_CHUNKS = ("ccv3", "chara")
_TEXT_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example", "creator_notes",
                "system_prompt", "post_history_instructions", "creator", "character_version", "nickname")
_LIST_FIELDS = ("alternate_greetings", "tags", "group_only_greetings", "source")
_OBJECT_FIELDS = ("extensions", "character_book", "creator_notes_multilingual")
# The fields a Likeness character is made of: stored, so they must be text Postgres can hold.
_USED = ("name", "description", "personality", "scenario", "first_mes")
# What a card may hold that a Likeness character has no place for (said in the import's notes).
_UNUSED = ("mes_example", "alternate_greetings", "group_only_greetings", "system_prompt",
           "post_history_instructions", "character_book")
# Our own namespace in `extensions`, as the V2 spec asks: what a card has no field for.
_EXTENSION = "likeness"
_GENDERS = ("woman", "man", "other")
_PLACEHOLDERS = re.compile(r"\{\{(char|user)\}\}|<(bot|user)>", re.IGNORECASE)


def _max_length(name: str) -> int:
    """The contract's limit on a CreateCharacter field: the one the create path enforces."""
    return next(m.max_length for m in CreateCharacter.model_fields[name].metadata if hasattr(m, "max_length"))


NAME_MAX, TRAIT_MAX, PERSONA_MAX = _max_length("name"), _max_length("personality"), _max_length("persona")


@dataclass(frozen=True)
class Card:
    """A card as read: its spec (`chara_card_v1` for a bare V1 card), its fields, and the PNG it came in."""

    spec: str
    data: dict[str, Any]
    picture: bytes | None = None


@dataclass(frozen=True)
class CardCharacter:
    """A Likeness character as a card says it; `gender` and `art_style` are None where the card is silent."""

    name: str
    persona: str = ""
    personality: str = ""
    occupation: str = ""
    gender: str | None = None
    art_style: str | None = None
    notes: tuple[str, ...] = field(default=())


def read_card(raw: bytes) -> Card:
    """The card in a PNG (its `ccv3` or `chara` text chunk) or a JSON file, validated."""
    if raw.startswith(_PNG_SIGNATURE):
        chunk, text = _card_chunk(raw)
        return _validated(_json(_unbase64(text, chunk), f"the `{chunk}` text chunk"), raw)
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        if raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
            raise _not_json("the file") from None
        raise UnsupportedMedia("a character card is a PNG (with the card in its `chara` or `ccv3` text chunk) or a "
                               "JSON file; this file is neither (judged by its content)",
                               code="unsupported_card") from None
    return _validated(document, None)


def _card_chunk(raw: bytes) -> tuple[str, str]:
    try:
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as image:
            # Reading `text` decodes the image: writers put the card after the pixels as often as before.
            chunks = {key.lower(): value for key, value in image.text.items()}
    except Image.DecompressionBombError:
        raise PayloadTooLarge("refused as a decompression bomb: the card's picture claims far more pixels than "
                              "a picture has", code="decompression_bomb") from None
    except Exception as exc:  # Pillow raises many types for damaged files (OSError, SyntaxError, ...)
        raise Unprocessable(f"the card's PNG is damaged or truncated ({type(exc).__name__}: {exc}); export the "
                            "card again", code="damaged_image") from None
    for chunk in _CHUNKS:
        if chunk in chunks:
            return chunk, chunks[chunk]
    raise Unprocessable("the PNG has no `chara` or `ccv3` text chunk, so it is a picture, not a character card; "
                        "export the card again from the app that made it", code="card_chunk_missing")


def _unbase64(text: str, chunk: str) -> bytes:
    compact = "".join(text.split())
    try:
        # Some writers drop the padding; it carries no information, so it is put back.
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable(f"the `{chunk}` text chunk is not base64, so the card in it cannot be read; export the "
                            "card again", code="card_not_base64") from None


def _json(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise _not_json(where) from None


def _not_json(where: str) -> Unprocessable:
    return Unprocessable(f"{where} is not valid UTF-8 JSON, so it holds no readable character card",
                         code="card_not_json")


def _validated(document: Any, picture: bytes | None) -> Card:
    if not isinstance(document, dict):
        raise Unprocessable(f"a character card is a JSON object, not {_kind(document)}", code="card_invalid_field")
    spec = document.get("spec")
    if spec is None:
        spec, data = "chara_card_v1", document
    elif spec not in _SPECS:
        raise Unprocessable(f"the card's spec is {str(spec)[:40]!r}; readable cards are chara_card_v2, "
                            "chara_card_v3, or V1 (without `spec`)", code="card_unknown_spec")
    else:
        data = document.get("data")
        if not isinstance(data, dict):
            raise Unprocessable(f"a {spec} card keeps its fields in the object `data`, and this one's is "
                                f"{_kind(data)}", code="card_invalid_field")
    for name in _TEXT_FIELDS:
        _check_type(data, name, str, "text")
    for name in _LIST_FIELDS:
        _check_type(data, name, list, "a list of texts")
        if any(not isinstance(item, str) for item in data.get(name) or ()):
            raise Unprocessable(f"the card's `{name}` must be a list of texts", code="card_invalid_field")
    for name in _OBJECT_FIELDS:
        _check_type(data, name, dict, "an object")
    name = (data.get("name") or "").strip()
    if not name:
        raise Unprocessable("the card has no `name` (or an empty one): a character needs a name",
                            code="card_name_missing")
    if len(name) > NAME_MAX:
        raise Unprocessable(f"the card's `name` has {len(name)} characters; a character's name may have at most "
                            f"{NAME_MAX}", code="card_field_too_long")
    return Card(spec, data, picture)


def _check_type(data: dict[str, Any], name: str, kind: type, said: str) -> None:
    value = data.get(name)
    # null for an absent field is common in cards written by hand; it means the same as leaving it out.
    if value is not None and not isinstance(value, kind):
        raise Unprocessable(f"the card's `{name}` must be {said}, not {_kind(value)}", code="card_invalid_field")
    if name in _USED and isinstance(value, str) and (why := unstorable(value)) is not None:
        raise Unprocessable(f"the card's `{name}` {why}", code="card_invalid_field")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def to_character(card: Card) -> CardCharacter:
    """The Likeness character a card describes, with notes on what did not fit or has no place here."""
    data = card.data
    name = data["name"].strip()
    text = {key: _spelled_out(str(data.get(key) or "").strip(), name)
            for key in ("description", "personality", "scenario", "first_mes")}
    # A short personality ("bold, curious") is Likeness' personality trait; a long one belongs in the persona.
    trait = text["personality"] if len(text["personality"]) <= TRAIT_MAX else ""
    sections = [("description", text["description"]),
                ("personality", "" if trait else _labelled("Personality", text["personality"])),
                ("scenario", _labelled("Scenario", text["scenario"])),
                ("first message", _labelled(f"{name}'s first message", text["first_mes"]))]
    persona, left_out = _fit([(label, body) for label, body in sections if body], PERSONA_MAX)
    notes = []
    if left_out:
        notes.append(f"A persona has at most {PERSONA_MAX} characters, so the card's {', '.join(left_out)} "
                     "did not fit; edit the persona to keep what matters most.")
    unused = [key for key in _UNUSED if data.get(key)]
    if unused:
        notes.append(f"Not used by Likeness: the card's {', '.join(unused)}.")
    own = (data.get("extensions") or {}).get(_EXTENSION)
    own = own if isinstance(own, dict) else {}
    return CardCharacter(name=name, persona=persona, personality=trait, occupation=_own_text(own, "occupation"),
                         gender=own.get("gender") if own.get("gender") in _GENDERS else None,
                         art_style=_own_text(own, "art_style") or None, notes=tuple(notes))


def _spelled_out(text: str, name: str) -> str:
    # Cards write {{char}} and {{user}} for the app to fill in; a Likeness persona is read as it is.
    return _PLACEHOLDERS.sub(lambda m: name if (m.group(1) or m.group(2)).lower() in ("char", "bot") else "the user",
                             text)


def _labelled(label: str, text: str) -> str:
    return f"{label}: {text}" if text else ""


def _fit(sections: list[tuple[str, str]], limit: int) -> tuple[str, list[str]]:
    """The sections joined within `limit`: in order, a section that does not fit is left out; when the first
    one alone is too long, its start is kept."""
    kept: list[str] = []
    left_out: list[str] = []
    for label, body in sections:
        if len("\n\n".join([*kept, body])) <= limit:
            kept.append(body)
        elif not kept:
            kept.append(_shortened(body, limit))
            left_out.append(f"{label} (shortened)")
        else:
            left_out.append(label)
    return "\n\n".join(kept), left_out


def _shortened(text: str, limit: int) -> str:
    cut = text[:limit - 1]
    # End on a whole word when one ends near the limit.
    space = cut.rfind(" ", limit * 4 // 5)
    return (cut[:space] if space > 0 else cut).rstrip() + "…"


def _own_text(own: dict[str, Any], key: str) -> str:
    value = own.get(key)
    return value.strip() if isinstance(value, str) and len(value) <= TRAIT_MAX and not unstorable(value) else ""


def build_card(character: CardCharacter, spec: str = "chara_card_v2") -> dict[str, Any]:
    """The card of a character: the persona as its description, the rest in our `extensions` namespace."""
    data: dict[str, Any] = {
        "name": character.name, "description": character.persona, "personality": character.personality,
        "scenario": "", "first_mes": "", "mes_example": "",
        "creator_notes": "Exported from Likeness.", "system_prompt": "", "post_history_instructions": "",
        "alternate_greetings": [], "tags": [], "creator": "", "character_version": "",
        "extensions": {_EXTENSION: {"gender": character.gender, "occupation": character.occupation,
                                    "art_style": character.art_style}},
    }
    if spec == "chara_card_v3":
        data["group_only_greetings"] = []
    return {"spec": spec, "spec_version": _SPECS[spec], "data": data}


def card_json(character: CardCharacter) -> bytes:
    """The character's V2 card as a JSON file."""
    return json.dumps(build_card(character), ensure_ascii=False, indent=2).encode("utf-8")


def card_png(character: CardCharacter, picture: bytes) -> bytes:
    """The picture (any format Pillow reads) as a PNG carrying the card: V2 in `chara`, V3 in `ccv3`."""
    info = PngInfo()
    for spec, chunk in (("chara_card_v2", "chara"), ("chara_card_v3", "ccv3")):
        encoded = json.dumps(build_card(character, spec), ensure_ascii=False).encode("utf-8")
        info.add_text(chunk, base64.b64encode(encoded).decode("ascii"))
    with Image.open(io.BytesIO(picture)) as image:
        image.load()
        if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        out = io.BytesIO()
        image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()
