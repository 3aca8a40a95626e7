"""Accounts: sign up for an API key, log the browser in with one, log out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from services.gateway.deps import GatewayDep, UserDep, set_session
from services.gateway.errors import Unauthorized
from services.gateway.schemas import LoginRequest, SignedUp

__all__ = ["router"]

router = APIRouter(prefix="/auth", tags=["auth"])


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
