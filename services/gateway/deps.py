"""FastAPI dependencies, each defined once as a named `Annotated` alias.

    GatewayDep    the process's shared resources
    UserDep       the caller (API key or session), rate limited; a new browser gets an anonymous session;
                  an API key with `X-Likeness-Nick: <nick>` acts for that nick (services.gateway.auth)
    ImageUserDep  the same, at a fraction of the rate cost (a page loads many thumbnails at once)
    SettingsDep, StoreDep, BlobsDep, HubDep, DatabaseDep, AccountsDep, ChainsDep, CommanderDep, ProjectorDep
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from services.gateway.accounts import Accounts
from services.gateway.auth import SESSION_COOKIE, User, new_anonymous_id, nick_problem
from services.gateway.chain_reader import ChainReader
from services.gateway.commands import Commander
from services.gateway.context import Gateway
from services.gateway.db import Database
from services.gateway.errors import BadRequest, Forbidden, RateLimited, Unauthorized, Unprocessable
from services.gateway.live import LiveHub
from services.gateway.readmodels.projector import Projector
from services.gateway.settings import GatewaySettings
from services.runtime.blobs import BlobStore
from services.runtime.eventstore import EventStore

__all__ = [
    "AccountsDep",
    "BlobsDep",
    "ChainsDep",
    "CommanderDep",
    "DatabaseDep",
    "GatewayDep",
    "HubDep",
    "ImageUserDep",
    "ProjectorDep",
    "SettingsDep",
    "StoreDep",
    "NICK_HEADER",
    "UserDep",
    "acting_for",
    "current_user",
    "set_session",
    "take_tokens",
]

# The header with which a program that holds an API key acts for one of the people it speaks for.
NICK_HEADER = "X-Likeness-Nick"

T = TypeVar("T")

# Cost in rate-limit tokens of an image or avatar request (a gallery page asks for dozens at once).
_IMAGE_COST = 0.2


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def _from_gateway(pick: Callable[[Gateway], T]) -> Callable[[Gateway], T]:
    """A dependency answering `pick(gateway)`, one of the process's shared resources."""

    def dependency(gateway: GatewayDep) -> T:
        return pick(gateway)

    return dependency


SettingsDep = Annotated[GatewaySettings, Depends(_from_gateway(lambda g: g.settings))]
StoreDep = Annotated[EventStore, Depends(_from_gateway(lambda g: g.store))]
BlobsDep = Annotated[BlobStore, Depends(_from_gateway(lambda g: g.blobs))]
HubDep = Annotated[LiveHub, Depends(_from_gateway(lambda g: g.hub))]
DatabaseDep = Annotated[Database, Depends(_from_gateway(lambda g: g.db))]
AccountsDep = Annotated[Accounts, Depends(_from_gateway(lambda g: g.accounts))]
ChainsDep = Annotated[ChainReader, Depends(_from_gateway(lambda g: g.chains))]
CommanderDep = Annotated[Commander, Depends(_from_gateway(lambda g: g.commander))]
ProjectorDep = Annotated[Projector, Depends(_from_gateway(lambda g: g.projector))]


def set_session(request: Request, value: str) -> None:
    """Have the response set (or, with "", clear) the session cookie (see app.SessionCookieMiddleware)."""
    request.state.set_session = value


async def _identify(request: Request, gateway: Gateway) -> User:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("send the API key as `Authorization: Bearer <key>`", code="invalid_authorization",
                               headers={"WWW-Authenticate": "Bearer"})
        found = await gateway.accounts.user_for_key(key.strip())
        if found is None:
            raise Unauthorized("the API key is not valid (or was revoked); POST /auth/signup makes a new one",
                               code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        user_id, kind = found
        user = User(user_id, kind, "api_key")
        nick = request.headers.get(NICK_HEADER)
        return user if nick is None else acting_for(user, nick, header=True)
    if request.headers.get(NICK_HEADER) is not None:
        raise _nick_needs_key()
    cookie = request.cookies.get(SESSION_COOKIE)
    user_id = gateway.signer.verify(cookie) if cookie else None
    if user_id is not None:
        # The kind is decided under a row lock where it matters (picture limits); prefixes only hint it.
        return User(user_id, "registered" if user_id.startswith("u-") else "anonymous", "session")
    user = User(new_anonymous_id(), "anonymous", "session", fresh=True)
    set_session(request, gateway.signer.sign(user.id))
    return user


def acting_for(user: User, nick: str, *, header: bool = False) -> User:
    """`user` acting for `nick`: only a program with an API key speaks for others, and only as itself or one nick."""
    where = f"the {NICK_HEADER} header" if header else "`nick`"
    if user.via != "api_key":
        raise _nick_needs_key()
    if (problem := nick_problem(nick)) is not None:
        # A nick in a JSON body is a field like any other (422); a header that cannot be read is a 400.
        error = BadRequest if header else Unprocessable
        raise error(f"{where}: {problem}", code="invalid_nick")
    if user.nick is not None and user.nick != nick:
        raise Unprocessable(f"{where} says {nick!r} but the {NICK_HEADER} header says {user.nick!r}; send one nick",
                            code="nick_mismatch")
    return user.as_nick(nick)


def take_tokens(gateway: Gateway, user: User, cost: float, key: str | None = None, *, account: bool = True) -> None:
    """Charge the caller's token buckets (a nick's own, and its key's unless `account` is False: a request
    already paid for as the key); RateLimited when one is empty."""
    # The nick's bucket first: a nick that asks too much is stopped before it spends its key's tokens.
    wait = gateway.nick_limiter.take(user.id, cost) if user.nick is not None else 0.0
    if not wait and account:
        wait = gateway.limiter.take(key or user.account, cost)
    if wait:
        raise RateLimited(f"too many requests; wait {wait:.1f}s and try again", code="rate_limited",
                          headers={"Retry-After": str(max(1, round(wait + 0.5)))})


def _nick_needs_key() -> Forbidden:
    return Forbidden(f"only a program with an API key acts for others ({NICK_HEADER} or `nick`): send "
                     "`Authorization: Bearer <key>` (POST /auth/signup makes one)", code="nick_needs_api_key")


def _limited(cost: float):
    async def dependency(request: Request, gateway: GatewayDep) -> User:
        user = await _identify(request, gateway)
        # A caller without a session yet is keyed by address, so dropping cookies does not reset the bucket.
        take_tokens(gateway, user, cost, f"ip:{request.client.host if request.client else '?'}" if user.fresh else None)
        request.state.user = user
        return user

    return dependency


current_user = _limited(1.0)
UserDep = Annotated[User, Depends(current_user)]
ImageUserDep = Annotated[User, Depends(_limited(_IMAGE_COST))]
