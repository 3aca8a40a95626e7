"""Users, API keys and the picture requests each user sent (the gateway's own tables, not the log).

A key's owner is cached per process for 60 s. Revoking a key evicts it from the revoking process's
cache at once; another gateway process goes on accepting it until its cached entry expires, so a
revocation takes effect everywhere within 60 s.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.gateway.auth import hash_key, new_api_key, new_user_id
from services.gateway.db import Database
from services.gateway.errors import Forbidden, RateLimited, Unprocessable

__all__ = ["Accounts", "ApiKey", "Submission"]

# A key's owner is looked up once a minute at most per process: a revocation reaches other processes within that.
_KEY_CACHE_S = 60.0
_KEY_COLUMNS = "key_id, prefix, created_at, last_used_at, revoked_at"


@dataclass(frozen=True)
class ApiKey:
    """What its owner may see of a key: never the key nor its hash."""

    key_id: UUID
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ApiKey:
        return cls(row["key_id"], row["prefix"], row["created_at"], row["last_used_at"], row["revoked_at"])


@dataclass(frozen=True)
class Submission:
    chain_id: UUID
    user_id: str
    # "" for a text-to-image request, which names no character (the column holds text, never null).
    character_id: str
    request_text: str
    origin: str
    source_chain_id: UUID | None

    def row(self) -> tuple[object, ...]:
        return (self.chain_id, self.user_id, self.character_id, self.request_text, self.origin, self.source_chain_id)


# A picture counts once whether the gateway sent it, chat started it, or both records exist.
_PICTURES_USED = ("SELECT count(*) FROM (SELECT chain_id FROM chain_submissions WHERE user_id = $1 "
                  "UNION SELECT chain_id FROM chains_view WHERE user_id = $1) AS mine")
# A nick's pictures in the window, and from when the oldest of them stops counting (the caller's Retry-After).
_NICK_WINDOW = ("SELECT submitted_at FROM chain_submissions WHERE user_id = $1 "
                "AND submitted_at > now() - make_interval(secs => $2) ORDER BY submitted_at")
_INSERT_SUBMISSION = ("INSERT INTO chain_submissions (chain_id, user_id, character_id, request_text, origin, "
                      "source_chain_id) VALUES ($1, $2, $3, $4, $5, $6)")


class Accounts:
    """Reads and writes of `users`, `api_keys` and `chain_submissions`."""

    def __init__(self, db: Database, *, anonymous_image_limit: int | None, nick_image_limit: int | None = None,
                 nick_window_s: float = 24 * 3600.0) -> None:
        self._db = db
        self.anonymous_image_limit = anonymous_image_limit
        self.nick_image_limit, self.nick_window_s = nick_image_limit, nick_window_s
        self._keys: OrderedDict[str, tuple[float, tuple[str, str] | None]] = OrderedDict()

    async def user_for_key(self, key: str) -> tuple[str, str] | None:
        """(user id, kind) of a valid API key; a lookup that reaches the database marks the key used."""
        digest = hash_key(key)
        cached = self._keys.get(digest)
        started = time.monotonic()
        if cached is not None and started - cached[0] < _KEY_CACHE_S:
            return cached[1]
        row = await self._db.fetchrow(
            "UPDATE api_keys k SET last_used_at = now() FROM users u "
            "WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.user_id = k.user_id "
            "RETURNING u.user_id, u.kind", digest)
        found = None if row is None else (row["user_id"], row["kind"])
        # A revocation made while this lookup was in flight wrote a newer entry: keep that one.
        newer = self._keys.get(digest)
        if newer is None or newer[0] <= started:
            self._remember(digest, found)
        return found

    def _remember(self, digest: str, found: tuple[str, str] | None) -> None:
        self._keys[digest] = (time.monotonic(), found)
        self._keys.move_to_end(digest)
        while len(self._keys) > 10_000:
            self._keys.popitem(last=False)

    async def keys(self, user_id: str) -> list[ApiKey]:
        """The user's API keys, revoked ones included, newest first."""
        rows = await self._db.fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, key_id", user_id)
        return [ApiKey.from_row(row) for row in rows]

    async def create_key(self, user_id: str) -> tuple[ApiKey, str]:
        """A new API key of a registered user: its record and the key itself (shown once, never stored)."""
        async with self._db.connect() as conn:
            return await _insert_key(conn, user_id)

    async def revoke_key(self, user_id: str, key_id: UUID) -> ApiKey | None:
        """Revoke one of the user's keys (again is a no-op); None if the user has no key `key_id`.

        This process stops accepting the key at once; other processes within their cache's 60 s.
        """
        row = await self._db.fetchrow(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE user_id = $1 AND key_id = $2 "
            f"RETURNING key_hash, {_KEY_COLUMNS}", user_id, key_id)
        if row is None:
            return None
        self._remember(row["key_hash"], None)
        return ApiKey.from_row(row)

    async def kind_of(self, user_id: str) -> str:
        kind = await self._db.fetchval("SELECT kind FROM users WHERE user_id = $1", user_id)
        return kind or "anonymous"

    async def register(self, anonymous_id: str | None) -> tuple[str, str]:
        """A registered user (the caller's anonymous user, upgraded, so its pictures stay) and a new key."""
        async with self._db.transaction() as conn:
            user_id = anonymous_id or new_user_id()
            await conn.execute(
                "INSERT INTO users (user_id, kind, registered_at) VALUES ($1, 'registered', now()) "
                "ON CONFLICT (user_id) DO UPDATE SET kind = 'registered', registered_at = now()", user_id)
            _, key = await _insert_key(conn, user_id)
        return user_id, key

    async def images_used(self, user_id: str) -> int:
        """Pictures the user asked for: through the gateway, or in chat (the log's chains)."""
        return int(await self._db.fetchval(_PICTURES_USED, user_id))

    async def may_start_picture(self, user_id: str, kind: str) -> bool:
        """Whether the user may start one more picture now (only an anonymous session is limited).

        Used where the picture is decided elsewhere (chat): not reserved, so two messages sent at the
        same instant with one picture left may both get one.
        """
        limit = self.anonymous_image_limit
        if kind != "anonymous" or limit is None:
            return True
        if await self.kind_of(user_id) != "anonymous":
            return True
        return await self.images_used(user_id) < limit

    async def reserve_pictures(self, user_id: str, kind: str, submissions: list[Submission], *,
                               nick: bool = False) -> None:
        """Record picture requests all at once, or none: refused when they would take an anonymous user past its
        limit, or a nick past its pictures per window (429 with the wait until enough of them no longer count).

        The user's row is locked for the check, so two requests at once cannot both take the last one.
        """
        wanted = len(submissions)
        async with self._db.transaction() as conn:
            await conn.execute("INSERT INTO users (user_id, kind) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
                               user_id, kind)
            kind = await conn.fetchval("SELECT kind FROM users WHERE user_id = $1 FOR UPDATE", user_id)
            limit = self.anonymous_image_limit
            if kind == "anonymous" and limit is not None:
                used = await conn.fetchval(_PICTURES_USED, user_id)
                if used + wanted > limit:
                    raise Forbidden(
                        f"an anonymous session may make {limit} pictures and this one has made {used}: "
                        "log in to make more (POST /auth/signup for an API key, then POST /auth/login with it)",
                        code="login_required")
            if nick and self.nick_image_limit is not None:
                await self._check_nick_window(conn, user_id, wanted)
            await conn.executemany(_INSERT_SUBMISSION, [s.row() for s in submissions])

    async def _check_nick_window(self, conn: asyncpg.Connection, user_id: str, wanted: int) -> None:
        limit, window = self.nick_image_limit, self.nick_window_s
        assert limit is not None
        if wanted > limit:
            raise Unprocessable(f"{wanted} pictures at once are more than a nick may ask for in "
                                f"{_span(window)} ({limit}); send fewer", code="nick_limit_exceeded")
        counted = [row["submitted_at"] for row in await conn.fetch(_NICK_WINDOW, user_id, window)]
        if len(counted) + wanted <= limit:
            return
        # Enough of the oldest must leave the window for `wanted` more to fit.
        frees_at = counted[len(counted) + wanted - limit - 1]
        wait = max(1, round(window - (await conn.fetchval("SELECT now()") - frees_at).total_seconds() + 0.5))
        raise RateLimited(f"this nick has asked for {len(counted)} of its {limit} pictures per {_span(window)}; "
                          f"it may ask for {wanted} more in {wait} s", code="nick_limit_reached",
                          headers={"Retry-After": str(wait)})

    async def nick_pictures_in_window(self, user_id: str) -> int:
        """Pictures a nick asked for within the current window."""
        return int(await self._db.fetchval(f"SELECT count(*) FROM ({_NICK_WINDOW}) AS counted", user_id,
                                           self.nick_window_s))

    async def record_submission(self, submission: Submission) -> None:
        """Record a picture another service started for the user (chat); recording it twice changes nothing.

        Not counted twice either: pictures used are the union of these rows and the chains in the log.
        """
        await self._db.execute(f"{_INSERT_SUBMISSION} ON CONFLICT (chain_id) DO NOTHING", *submission.row())

    async def submission(self, chain_id: UUID) -> Submission | None:
        row = await self._db.fetchrow("SELECT * FROM chain_submissions WHERE chain_id = $1", chain_id)
        if row is None:
            return None
        return Submission(row["chain_id"], row["user_id"], row["character_id"], row["request_text"], row["origin"],
                          row["source_chain_id"])


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


async def _insert_key(conn: asyncpg.Connection, user_id: str) -> tuple[ApiKey, str]:
    key = new_api_key()
    row = await conn.fetchrow(f"INSERT INTO api_keys (key_hash, user_id, prefix) VALUES ($1, $2, $3) "
                              f"RETURNING {_KEY_COLUMNS}", hash_key(key), user_id, key[:8])
    return ApiKey.from_row(row), key
