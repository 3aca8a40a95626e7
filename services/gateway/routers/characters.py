"""Characters: the list, personas, photo uploads (new character or new reference) and avatars."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from contracts import CreateCharacter, SetCharacterReference, UpdatePersona
from contracts.streams import character_stream, reference_stream
from services.gateway.characters import (
    load_character,
    new_character_id,
    raise_if_refused,
    visible_character,
)
from services.gateway.deps import (
    BlobsDep,
    DatabaseDep,
    GatewayDep,
    ImageUserDep,
    UserDep,
)
from services.gateway.errors import NotFound, Unprocessable
from services.gateway.images import placeholder_avatar
from services.gateway.readmodels.characters import CharacterView
from services.gateway.readmodels.view_rows import character_from_row
from services.gateway.schemas import Character, Persona, PersonaUpdate
from services.gateway.uploads import check_face, check_photo, clean_photo, parse_multipart, read_body

__all__ = ["router"]

router = APIRouter(tags=["characters"])

_GENDERS = ("woman", "man", "other")
_UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "format": "binary", "description": "a JPEG, PNG or WebP photo of one face"},
                "character_id": {"type": "string", "description": "set the reference of this character; "
                                 "omit to create a new one"},
                "name": {"type": "string", "description": "the new character's name (required to create)"},
                "gender": {"type": "string", "enum": list(_GENDERS)},
                "personality": {"type": "string"},
                "occupation": {"type": "string"},
                "persona": {"type": "string"},
                "art_style": {"type": "string", "description": "one of GET /styles"},
                "face": {"type": "string", "enum": ["largest"],
                         "description": "a photo with several faces is refused (422 several_faces) unless this says "
                                        "which is the character's: the largest"},
            },
        }}},
    },
}
# How long to wait for the reference image event that follows a CharacterCreated.
_REFERENCE_GRACE_S = 3.0


def _persona(view: CharacterView, user_id: str) -> dict[str, Any]:
    return {"character_id": view.character_id, "name": view.name, "persona": view.persona,
            "personality": view.personality, "occupation": view.occupation, "builtin": view.builtin,
            "editable": view.editable_by(user_id)}


# A built-in character's reference is the caller's own: joined in from `user_references_view`.
_LIST = """
    SELECT c.*, r.reference AS user_reference FROM characters_view c
    LEFT JOIN user_references_view r ON c.builtin AND r.character_id = c.character_id AND r.user_id = $1
    WHERE c.builtin OR c.owner = $1
    ORDER BY c.builtin DESC, lower(c.name), c.character_id
"""


@router.get("/characters", response_model=list[Character], summary="The built-in characters and yours")
async def list_characters(user: UserDep, db: DatabaseDep) -> list[dict[str, Any]]:
    return [character_from_row(row).public() for row in await db.fetch(_LIST, user.id)]


@router.get("/characters/{character_id}/persona", response_model=Persona, summary="A character's persona text")
async def get_persona(character_id: str, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    view = await visible_character(gateway.store, character_id, user)
    return _persona(view, user.id)


@router.put("/characters/{character_id}/persona", response_model=Persona,
            summary="Rewrite the persona of a character of yours, or your own take on a built-in one")
async def put_persona(character_id: str, body: PersonaUpdate, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    view = await visible_character(gateway.store, character_id, user)
    command = UpdatePersona(character_id=character_id, persona=body.persona, personality=body.personality,
                            occupation=body.occupation, requested_by=user.id)
    # A built-in's persona is adjusted for the caller alone: chat answers on the caller's own stream.
    answer = await gateway.commander.send_and_wait(command, stream=reference_stream(character_id, user.id,
                                                                                    builtin=view.builtin),
                                                   actor=user.id, timeout_s=gateway.settings.gateway_command_timeout_s)
    raise_if_refused(answer)
    await gateway.projector.sync()
    return _persona(await load_character(gateway.store, character_id, user.id), user.id)


@router.post("/characters/upload-image", response_model=Character, status_code=201, openapi_extra=_UPLOAD_FORM,
             summary="Create a character from a face photo, or give a character a new reference photo",
             responses={200: {"description": "the reference of an existing character was set"}})
async def upload_image(request: Request, user: UserDep, gateway: GatewayDep, blobs: BlobsDep) -> JSONResponse:
    settings = gateway.settings
    body = await read_body(request, settings.gateway_upload_max_bytes)
    parts = parse_multipart(request.headers.get("content-type", ""), body)
    image = parts.get("image")
    if image is None:
        raise Unprocessable("send the photo in a file field named `image`", code="image_missing")
    fields = {name: part.text() for name, part in parts.items() if name != "image"}
    face = fields.pop("face", "") or None
    if face not in (None, "largest"):
        raise Unprocessable(f"`face` may only be \"largest\" (the face that is the character's in a photo of "
                            f"several), not {face[:40]!r}", code="invalid_field")
    existing = fields.get("character_id") or None
    view = await visible_character(gateway.store, existing, user) if existing else None
    if view is None:
        catalog = await gateway.catalog.get()
        create = _creation(fields, catalog.style_names(), catalog.default_style)
    else:
        create = None
    await asyncio.to_thread(check_photo, image.data, max_bytes=settings.gateway_upload_max_bytes,
                            max_pixels=settings.gateway_upload_max_pixels, min_side=settings.gateway_upload_min_side)
    # A phone photo carries where and with what it was taken: none of that is stored or served back.
    reference = await blobs.put_image(await asyncio.to_thread(clean_photo, image.data))
    await check_face(gateway.runtime.bus.nc, reference.sha256, timeout_s=settings.gateway_facecheck_timeout_s,
                     several_allowed=face == "largest")
    if create is None:
        assert view is not None
        command = SetCharacterReference(character_id=view.character_id, image=reference, requested_by=user.id)
        character_id, status = view.character_id, 200
        # A built-in character's reference is the caller's own: chat answers on the caller's stream.
        stream = reference_stream(character_id, user.id, builtin=view.builtin)
    else:
        character_id = new_character_id(create["name"])
        command = CreateCharacter(character_id=character_id, owner=user.id, reference_image=reference, **create)
        status, stream = 201, character_stream(character_id)
    answer = await gateway.commander.send_and_wait(command, stream=stream, actor=user.id,
                                                   timeout_s=settings.gateway_command_timeout_s)
    raise_if_refused(answer)
    view = await _with_reference(gateway, character_id, user.id, reference.sha256)
    await gateway.projector.sync()
    return JSONResponse(view.public(), status_code=status)


def _creation(fields: dict[str, str], styles: Any, default_style: str) -> dict[str, Any]:
    name = fields.get("name", "")
    if not name:
        raise Unprocessable("a new character needs a `name` (or send `character_id` to set an existing "
                            "character's photo)", code="name_missing")
    if len(name) > 100:
        raise Unprocessable("`name` may have at most 100 characters", code="invalid_field")
    gender = fields.get("gender") or "other"
    if gender not in _GENDERS:
        raise Unprocessable(f"`gender` must be one of {', '.join(_GENDERS)}", code="invalid_field")
    style = fields.get("art_style") or default_style
    if style not in styles:
        raise Unprocessable(f"unknown art_style {style!r}; choose one of {', '.join(sorted(styles))} "
                            "(GET /styles)", code="unknown_style")
    limits = {"personality": 200, "occupation": 200, "persona": 4000}
    for field, limit in limits.items():
        if len(fields.get(field, "")) > limit:
            raise Unprocessable(f"`{field}` may have at most {limit} characters", code="invalid_field")
    return {"name": name, "gender": gender, "art_style": style, **{f: fields.get(f, "") for f in limits}}


async def _with_reference(gateway: Any, character_id: str, user_id: str, sha256: str) -> CharacterView:
    """The character once its new reference is in the log (chat may record it just after the creation)."""
    deadline = time.monotonic() + _REFERENCE_GRACE_S
    while True:
        view = await load_character(gateway.store, character_id, user_id)
        if (view.reference is not None and view.reference.sha256 == sha256) or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.05)


@router.get("/avatar/{character_id}", summary="The character's reference photo (yours, for a built-in one), "
            "or a generated placeholder",
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "image/svg+xml": {}}}})
async def avatar(character_id: str, request: Request, user: ImageUserDep, gateway: GatewayDep) -> Response:
    """A built-in character's avatar is the caller's own reference photo: nobody sees another user's."""
    view = await load_character(gateway.store, character_id, user.id)
    if not view.visible_to(user.id):
        raise NotFound(f"no character {character_id!r}", code="character_not_found")
    # The reference may change, so revalidate after a few minutes; the ETag makes that a 304.
    if view.reference is None:
        etag = f'"placeholder-{view.version}"'
        media_type, load = "image/svg+xml", None
    else:
        etag = f'"{view.reference.sha256}"'
        media_type, load = view.reference.media_type, view.reference.sha256
    # Who asks decides which photo a built-in character shows, so caches keep one per caller.
    headers = {"Cache-Control": "private, max-age=300", "ETag": etag, "Vary": "Cookie, Authorization"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    data = placeholder_avatar(view.character_id, view.name) if load is None else await gateway.blobs.get(load)
    return Response(data, media_type=media_type, headers=headers)
