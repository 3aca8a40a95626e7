"""Who is asking: API keys for programs, a signed session cookie for the browser, and per-user
rate limits (a token bucket per user, per process).

* API key: `Authorization: Bearer lk_...`; only its sha256 is stored (`api_keys.key_hash`).
* Session: cookie `likeness_session` = `<user_id>.<issued>.<hmac>`, HMAC-SHA256 over the first two
  with the settings' secret. A browser without one gets a fresh anonymous user id (`anon-...`);
  nothing is written for it until it asks for a picture.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SESSION_COOKIE",
    "RateLimiter",
    "SessionSigner",
    "User",
    "hash_key",
    "new_anonymous_id",
    "new_api_key",
    "new_user_id",
]

SESSION_COOKIE = "likeness_session"
_USER_ID = re.compile(r"^(anon|u)-[0-9a-f]{32}$")


@dataclass(frozen=True)
class User:
    """The caller: `kind` says whether pictures are limited; `fresh` when its session was just made."""

    id: str
    kind: Literal["anonymous", "registered"]
    via: Literal["api_key", "session"]
    fresh: bool = False

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


def new_anonymous_id() -> str:
    return f"anon-{uuid.uuid4().hex}"


def new_user_id() -> str:
    return f"u-{uuid.uuid4().hex}"


def new_api_key() -> str:
    """A key shown once: 256 random bits, with a prefix that says what it is."""
    return "lk_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class SessionSigner:
    """Signs and checks session cookie values."""

    def __init__(self, secret: str, *, max_age_s: int) -> None:
        self._secret = secret.encode()
        self.max_age_s = max_age_s

    def sign(self, user_id: str, *, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        payload = f"{user_id}.{issued}"
        return f"{payload}.{self._mac(payload)}"

    def verify(self, value: str, *, now: float | None = None) -> str | None:
        """The user id of a genuine, unexpired cookie; None otherwise."""
        try:
            user_id, issued, mac = value.split(".")
            age = (time.time() if now is None else now) - int(issued)
        except ValueError:
            return None
        if not _USER_ID.match(user_id) or not 0 <= age <= self.max_age_s + 60:
            return None
        if not hmac.compare_digest(mac, self._mac(f"{user_id}.{issued}")):
            return None
        return user_id

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class RateLimiter:
    """A token bucket per key: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate_per_s: float, burst: float, *, max_keys: int = 100_000) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys

    def take(self, key: str, cost: float = 1.0, *, now: float | None = None) -> float:
        """0 if the request may go ahead, else the seconds until it could."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= cost:
            self._store(key, tokens - cost, now)
            return 0.0
        self._store(key, tokens, now)
        return max(0.001, math.ceil((cost - tokens) / self.rate * 1000) / 1000)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        # A full bucket idle long enough is the same as no bucket: forget the oldest keys first.
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
