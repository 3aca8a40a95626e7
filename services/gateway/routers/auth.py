"""Accounts: sign up for an API key, log the browser in with one, log out; list, add and revoke keys.

A revoked key is refused at once by the process that revoked it, and by every other gateway
process within 60 s (each caches a key's owner for that long).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from services.gateway.accounts import Accounts
from services.gateway.auth import User
from services.gateway.deps import AccountsDep, GatewayDep, UserDep, set_session
from services.gateway.errors import Forbidden, NotFound, Unauthorized
from services.gateway.schemas import LoginRequest, SignedUp

__all__ = ["router"]

router = APIRouter(prefix="/auth", tags=["auth"])


class ApiKeyInfo(BaseModel):
    key_id: UUID = Field(description="names the key in DELETE /auth/keys/{key_id}")
    prefix: str = Field(description="the key's first 8 characters, to recognise it by (not unique)")
    created_at: datetime
    last_used_at: datetime | None = Field(description="the last lookup of the key, to within a minute")
    revoked_at: datetime | None


class NewApiKey(ApiKeyInfo):
    api_key: str = Field(description="shown this once: store it; only its hash is kept")


@router.post("/signup", response_model=SignedUp, status_code=201,
             summary="Become a registered user; the API key is shown once")
async def signup(request: Request, user: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    # An anonymous browser keeps its pictures: its user becomes the registered one.
    carry = user.id if user.via == "session" and not user.fresh and user.anonymous else None
    user_id, key = await gateway.accounts.register(carry)
    set_session(request, gateway.signer.sign(user_id))
    return {"user_id": user_id, "api_key": key, "kind": "registered"}


@router.post("/login", summary="Log this browser in as the owner of an API key (sets the session cookie)")
async def login(body: LoginRequest, request: Request, _: UserDep, gateway: GatewayDep) -> dict[str, Any]:
    found = await gateway.accounts.user_for_key(body.api_key)
    if found is None:
        raise Unauthorized("that API key is not valid (or was revoked); check it, or POST /auth/signup for a new one",
                           code="invalid_api_key")
    user_id, kind = found
    set_session(request, gateway.signer.sign(user_id))
    return {"user_id": user_id, "kind": kind}


@router.post("/logout", status_code=204, summary="Forget this browser's session")
async def logout(request: Request) -> Response:
    set_session(request, "")
    return Response(status_code=204)


@router.get("/keys", response_model=list[ApiKeyInfo], summary="Your API keys, revoked ones included, newest first")
async def list_keys(user: UserDep, accounts: AccountsDep) -> list[dict[str, Any]]:
    await _registered(user, accounts)
    return [asdict(key) for key in await accounts.keys(user.id)]


@router.post("/keys", response_model=NewApiKey, status_code=201,
             summary="Another API key for a registered user; the key is shown once")
async def create_key(user: UserDep, accounts: AccountsDep) -> dict[str, Any]:
    await _registered(user, accounts)
    key, secret = await accounts.create_key(user.id)
    return asdict(key) | {"api_key": secret}


@router.delete("/keys/{key_id}", response_model=ApiKeyInfo,
               summary="Revoke one of your API keys (the one in use too); refused everywhere within 60 s")
async def revoke_key(key_id: str, user: UserDep, accounts: AccountsDep) -> dict[str, Any]:
    await _registered(user, accounts)
    wanted = _uuid(key_id)
    revoked = None if wanted is None else await accounts.revoke_key(user.id, wanted)
    if revoked is None:
        raise NotFound(f"you have no API key {key_id!r}; GET /auth/keys lists yours with their key_id",
                       code="key_not_found")
    return asdict(revoked)


async def _registered(user: User, accounts: Accounts) -> None:
    if user.nick is not None:
        raise Forbidden("a nick's requests are its key's: manage API keys without X-Likeness-Nick",
                        code="nick_not_allowed")
    # A session's id prefix only hints the kind (a signed-up browser keeps its anon- id): ask the table.
    if await accounts.kind_of(user.id) == "registered":
        return
    raise Forbidden("API keys belong to registered users: POST /auth/signup for your first key (a browser keeps "
                    "its pictures), then manage them here", code="login_required")


def _uuid(text: str) -> UUID | None:
    # The path takes text, so a malformed id is "not one of yours" (404) like any other, not a 422.
    try:
        return UUID(text)
    except ValueError:
        return None
