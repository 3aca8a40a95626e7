"""Users, API keys and the picture requests each user sent (the gateway's own tables, not the log)."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from uuid import UUID

from services.gateway.auth import hash_key, new_api_key, new_user_id
from services.gateway.db import Database
from services.gateway.errors import Forbidden

__all__ = ["Accounts", "Submission"]

# A key's owner is looked up once a minute at most per process; revoking takes effect within that.
_KEY_CACHE_S = 60.0


@dataclass(frozen=True)
class Submission:
    chain_id: UUID
    user_id: str
    character_id: str
    request_text: str
    origin: str
    source_chain_id: UUID | None


class Accounts:
    """Reads and writes of `users`, `api_keys` and `chain_submissions`."""

    def __init__(self, db: Database, *, anonymous_image_limit: int | None) -> None:
        self._db = db
        self.anonymous_image_limit = anonymous_image_limit
        self._keys: OrderedDict[str, tuple[float, tuple[str, str] | None]] = OrderedDict()

    async def user_for_key(self, key: str) -> tuple[str, str] | None:
        """(user id, kind) of a valid API key."""
        digest = hash_key(key)
        cached = self._keys.get(digest)
        if cached is not None and time.monotonic() - cached[0] < _KEY_CACHE_S:
            return cached[1]
        row = await self._db.fetchrow(
            "SELECT u.user_id, u.kind FROM api_keys k JOIN users u USING (user_id) "
            "WHERE k.key_hash = $1 AND k.revoked_at IS NULL", digest)
        found = None if row is None else (row["user_id"], row["kind"])
        self._keys[digest] = (time.monotonic(), found)
        while len(self._keys) > 10_000:
            self._keys.popitem(last=False)
        return found

    async def kind_of(self, user_id: str) -> str:
        kind = await self._db.fetchval("SELECT kind FROM users WHERE user_id = $1", user_id)
        return kind or "anonymous"

    async def register(self, anonymous_id: str | None) -> tuple[str, str]:
        """A registered user (the caller's anonymous user, upgraded, so its pictures stay) and a new key."""
        key = new_api_key()
        async with self._db.transaction() as conn:
            user_id = anonymous_id or new_user_id()
            await conn.execute(
                "INSERT INTO users (user_id, kind, registered_at) VALUES ($1, 'registered', now()) "
                "ON CONFLICT (user_id) DO UPDATE SET kind = 'registered', registered_at = now()", user_id)
            await conn.execute("INSERT INTO api_keys (key_hash, user_id, prefix) VALUES ($1, $2, $3)",
                               hash_key(key), user_id, key[:8])
        return user_id, key

    async def images_used(self, user_id: str) -> int:
        """Pictures the user asked for: through the gateway, or in chat (the log's chains)."""
        return int(await self._db.fetchval(
            "SELECT count(*) FROM (SELECT chain_id FROM chain_submissions WHERE user_id = $1 "
            "UNION SELECT chain_id FROM chains_view WHERE user_id = $1) AS mine", user_id))

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

    async def reserve_picture(self, user_id: str, kind: str, submission: Submission) -> None:
        """Record a picture request, refusing it when an anonymous user has used up the limit.

        The user's row is locked for the check, so two requests at once cannot both take the last one.
        """
        async with self._db.transaction() as conn:
            await conn.execute("INSERT INTO users (user_id, kind) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
                               user_id, kind)
            kind = await conn.fetchval("SELECT kind FROM users WHERE user_id = $1 FOR UPDATE", user_id)
            limit = self.anonymous_image_limit
            if kind == "anonymous" and limit is not None:
                used = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT chain_id FROM chain_submissions WHERE user_id = $1 "
                    "UNION SELECT chain_id FROM chains_view WHERE user_id = $1) AS mine", user_id)
                if used >= limit:
                    raise Forbidden(
                        f"an anonymous session may make {limit} pictures and this one has made {used}: "
                        "log in to make more (POST /auth/signup for an API key, then POST /auth/login with it)",
                        code="login_required")
            await conn.execute(
                "INSERT INTO chain_submissions (chain_id, user_id, character_id, request_text, origin, "
                "source_chain_id) VALUES ($1, $2, $3, $4, $5, $6)",
                submission.chain_id, submission.user_id, submission.character_id, submission.request_text,
                submission.origin, submission.source_chain_id)

    async def submission(self, chain_id: UUID) -> Submission | None:
        row = await self._db.fetchrow("SELECT * FROM chain_submissions WHERE chain_id = $1", chain_id)
        if row is None:
            return None
        return Submission(row["chain_id"], row["user_id"], row["character_id"], row["request_text"], row["origin"],
                          row["source_chain_id"])
