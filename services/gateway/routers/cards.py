"""Character cards: import a SillyTavern card as a character of one's own, export a character as a card."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from contracts import CreateCharacter, ImageRef
from contracts.streams import character_stream
from services.gateway.character_cards import CardCharacter, card_json, card_png, read_card, to_character
from services.gateway.characters import load_character, new_character_id, raise_if_refused, visible_character
from services.gateway.deps import GatewayDep, UserDep
from services.gateway.errors import Conflict, PayloadTooLarge, Unprocessable, UnsupportedMedia
from services.gateway.readmodels.characters import CharacterView
from services.gateway.schemas import Character
from services.gateway.images import sniff_media_type
from services.gateway.uploads import (
    Part,
    PhotoCheck,
    check_face,
    check_photo,
    clean_photo,
    parse_multipart,
    read_body,
)

__all__ = ["router"]

router = APIRouter(tags=["characters"])

_GENDERS = ("woman", "man", "other")
# What the face check says of a picture that is a fine image but no face reference: the import goes on without it.
_NOT_A_REFERENCE = {
    "no_face": "shows no face the face check can use",
    "several_faces": "shows several faces",
}
_IMPORT_FORM = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["card"],
            "properties": {
                "card": {"type": "string", "format": "binary",
                         "description": "a SillyTavern character card: a PNG (card in its `ccv3` or `chara` text "
                                        "chunk) or a JSON file; V1, V2 and V3 are read"},
                "photo": {"type": "string", "format": "binary",
                          "description": "a JPEG, PNG or WebP photo of one face, the character's reference instead "
                                         "of the card's picture (for a JSON card, or a picture that is no face)"},
                "gender": {"type": "string", "enum": list(_GENDERS)},
                "art_style": {"type": "string", "description": "one of GET /styles"},
            },
        }}},
    },
}
# How long to wait for the reference image event that follows a CharacterCreated.
_REFERENCE_GRACE_S = 3.0


class ImportedCharacter(Character):
    notes: list[str]


@router.post("/characters/import-card", response_model=ImportedCharacter, status_code=201,
             openapi_extra=_IMPORT_FORM, summary="Create a character of yours from a SillyTavern character card",
             responses={201: {"description": "the new character; `notes` says what the card could not give (a "
                                             "face for its reference, room in the persona, fields with no place)"}})
async def import_card(request: Request, user: UserDep, gateway: GatewayDep) -> JSONResponse:
    settings = gateway.settings
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMedia("send the card as multipart/form-data, in a file field named `card`",
                               code="multipart_required")
    parts = parse_multipart(content_type, await read_body(request, settings.gateway_upload_max_bytes))
    upload = parts.get("card")
    if upload is None or not upload.data:
        raise Unprocessable("send the character card (a PNG or JSON file) in a file field named `card`",
                            code="card_missing")
    if len(upload.data) > settings.gateway_upload_max_bytes:
        raise PayloadTooLarge(f"the card has {len(upload.data)} bytes; a card may have at most "
                              f"{settings.gateway_upload_max_bytes}", code="file_too_large")
    fields = {name: part.text() for name, part in parts.items() if name not in ("card", "photo")}
    picture_check = None
    if sniff_media_type(upload.data) == "image/png":
        # The size, pixel-bomb and integrity checks of a photo upload, before the card's picture is decoded.
        picture_check = await asyncio.to_thread(check_photo, upload.data, max_bytes=settings.gateway_upload_max_bytes,
                                                max_pixels=settings.gateway_upload_max_pixels, min_side=1)
    card = await asyncio.to_thread(read_card, upload.data)
    found = to_character(card)
    catalog = await gateway.catalog.get()
    gender = _choice(fields.get("gender") or found.gender or "other", _GENDERS, "gender")
    art_style = fields.get("art_style") or (found.art_style if found.art_style in catalog.style_names() else None)
    art_style = _choice(art_style or catalog.default_style, sorted(catalog.style_names()), "art_style")
    photo = parts.get("photo")
    if photo is not None and photo.data:
        reference, why_not = await _photo_reference(gateway, photo), None
    else:
        reference, why_not = await _card_reference(gateway, picture_check, upload.data)
    notes = [*found.notes] if why_not is None else [*found.notes, _no_reference(found.name, why_not)]
    character_id = new_character_id(found.name)
    command = CreateCharacter(character_id=character_id, owner=user.id, reference_image=reference, name=found.name,
                              gender=gender, art_style=art_style, personality=found.personality,
                              occupation=found.occupation, persona=found.persona)
    answer = await gateway.commander.send_and_wait(command, stream=character_stream(character_id), actor=user.id,
                                                   timeout_s=settings.gateway_command_timeout_s)
    raise_if_refused(answer)
    view = await _created(gateway, character_id, user.id, reference)
    await gateway.projector.sync()
    return JSONResponse({**view.public(), "notes": notes}, status_code=201)


def _choice(value: str, allowed: Any, name: str) -> str:
    if value not in allowed:
        hint = " (GET /styles)" if name == "art_style" else ""
        raise Unprocessable(f"`{name}` must be one of {', '.join(allowed)}{hint}, not {value[:40]!r}",
                            code="unknown_style" if name == "art_style" else "invalid_field")
    return value


async def _photo_reference(gateway: Any, photo: Part) -> ImageRef:
    """A photo sent with the card: checked as an upload is, refused when it is no face."""
    settings = gateway.settings
    await asyncio.to_thread(check_photo, photo.data, max_bytes=settings.gateway_upload_max_bytes,
                            max_pixels=settings.gateway_upload_max_pixels, min_side=settings.gateway_upload_min_side)
    reference = await gateway.blobs.put_image(await asyncio.to_thread(clean_photo, photo.data))
    await check_face(gateway.runtime.bus.nc, reference.sha256, timeout_s=settings.gateway_facecheck_timeout_s)
    return reference


async def _card_reference(gateway: Any, picture: PhotoCheck | None, data: bytes) -> tuple[ImageRef | None, str | None]:
    """The card's own picture as the reference when it shows one face, else None and why not."""
    if picture is None:
        return None, "is missing (the card is a JSON file)"
    if min(picture.width, picture.height) < gateway.settings.gateway_upload_min_side:
        return None, f"is {picture.width}x{picture.height} pixels, too small to show a face"
    # Stored without the card's text chunks: the reference is the picture, and the card lives in the character.
    reference = await gateway.blobs.put_image(await asyncio.to_thread(clean_photo, data))
    try:
        await check_face(gateway.runtime.bus.nc, reference.sha256,
                         timeout_s=gateway.settings.gateway_facecheck_timeout_s)
    except Unprocessable as exc:
        if exc.code not in _NOT_A_REFERENCE:
            raise
        return None, _NOT_A_REFERENCE[exc.code]
    return reference, None


def _no_reference(name: str, why: str) -> str:
    return (f"The card's picture {why}, so {name} has no reference photo yet: add a photo of one face before "
            "asking for pictures (or send it as `photo` with the card).")


async def _created(gateway: Any, character_id: str, user_id: str, reference: ImageRef | None) -> CharacterView:
    """The new character once its reference (if any) is in the log: chat may record it just after the creation."""
    deadline = time.monotonic() + _REFERENCE_GRACE_S
    while True:
        view = await load_character(gateway.store, character_id, user_id)
        done = reference is None or (view.reference is not None and view.reference.sha256 == reference.sha256)
        if done or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.05)


@router.get("/characters/{character_id}/card", summary="A character as a SillyTavern character card (a download)",
            responses={200: {"description": "the card: a PNG of the reference photo carrying it (`chara` V2 and "
                                            "`ccv3` V3 text chunks), or V2 JSON",
                             "content": {"image/png": {}, "application/json": {}}},
                       409: {"description": "format=png for a character without a reference photo"}})
async def export_card(character_id: str, user: UserDep, gateway: GatewayDep,
                      format: Literal["png", "json"] = Query(default="png", description="png or json")) -> Response:
    view = await visible_character(gateway.store, character_id, user)
    character = CardCharacter(name=view.name, persona=view.persona, personality=view.personality,
                              occupation=view.occupation, gender=view.gender, art_style=view.art_style)
    if format == "json":
        data, media_type = card_json(character), "application/json"
    elif view.reference is None:
        raise Conflict(f"{view.name} has no reference photo, so there is no picture to carry the card; add one, or "
                       "ask for the card as JSON (format=json)", code="no_reference")
    else:
        picture = await gateway.blobs.get(view.reference.sha256)
        data, media_type = await asyncio.to_thread(card_png, character, picture), "image/png"
    return Response(data, media_type=media_type, headers={
        "Content-Disposition": _attachment(view.name, format),
        # A card follows the character's persona and photo, which change.
        "Cache-Control": "private, no-cache",
    })


def _attachment(name: str, extension: str) -> str:
    """A download named after the character: an ASCII name for old clients, the real one (RFC 6266) for others."""
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "character"
    return f"attachment; filename=\"{plain}.{extension}\"; filename*=UTF-8''{quote(f'{name}.{extension}', safe='')}"
