"""Who is asking: API keys for programs, a signed session cookie for the browser, and per-user
rate limits (a token bucket per user, per process).

* API key: `Authorization: Bearer lk_...`; only its sha256 is stored (`api_keys.key_hash`).
* Session: cookie `likeness_session` = `<user_id>.<issued>.<signature>`, signed by itsdangerous'
  TimestampSigner (HMAC-SHA256, key derived from the settings' secret). A browser without one gets a fresh anonymous user id (`anon-...`);
  nothing is written for it until it asks for a picture.
* Nick: a program with an API key that speaks for many people (an IRC or Matrix bot) names the person
  with a nick; it then acts as the user `<key's user id>/<nick>` (`nick_user_id`): that user's pictures,
  limits, gallery and references are the nick's own. The key's own user sees its nicks' chains; a nick
  sees only its own, and no nick ever sees another key's.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous import BadSignature, Signer, TimestampSigner, want_bytes

__all__ = [
    "NICK_MAX",
    "NICK_PATTERN",
    "NICK_SEPARATOR",
    "SESSION_COOKIE",
    "RateLimiter",
    "SessionSigner",
    "User",
    "hash_key",
    "new_anonymous_id",
    "new_api_key",
    "new_user_id",
    "nick_problem",
    "nick_user_id",
]

SESSION_COOKIE = "likeness_session"
_USER_ID = re.compile(r"^(anon|u)-[0-9a-f]{32}$")
# No user id of a key or a session holds it, so `<user>/<nick>` can never name another key's user.
NICK_SEPARATOR = "/"
NICK_MAX = 64
# IRC nicks ([]\`^{}|), Matrix ids (@name:server): anything printable but the separator and white space.
NICK_PATTERN = r"^[^\s/\x00-\x1f\x7f]{1,64}$"
_NICK = re.compile(NICK_PATTERN)


@dataclass(frozen=True)
class User:
    """The caller: `kind` says whether pictures are limited; `fresh` when its session was just made;
    `nick` when a program acts for one of its people (then `id` is `<account>/<nick>`)."""

    id: str
    kind: Literal["anonymous", "registered"]
    via: Literal["api_key", "session"]
    fresh: bool = False
    nick: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"

    @property
    def account(self) -> str:
        """The user the key (or session) belongs to: `id` itself, or the part before a nick."""
        return self.id.partition(NICK_SEPARATOR)[0] if self.nick is not None else self.id

    def sees(self, owner: str | None) -> bool:
        """Whether something `owner` made is this caller's to see: their own, or, for a key acting as itself,
        one of its nicks'. A nick sees only its own; nobody sees another key's."""
        if owner is None:
            return False
        return owner == self.id or (self.nick is None and owner.startswith(self.id + NICK_SEPARATOR))

    def as_nick(self, nick: str) -> User:
        """The same caller acting for `nick` (checked with `nick_problem` first)."""
        return User(nick_user_id(self.account, nick), self.kind, self.via, nick=nick)


def nick_user_id(account: str, nick: str) -> str:
    """The user a nick of `account` acts as: recorded as the owner of its chains, submissions and references."""
    return f"{account}{NICK_SEPARATOR}{nick}"


def nick_problem(nick: str) -> str | None:
    """What is wrong with a nick, or None when it is usable."""
    if _NICK.match(nick):
        return None
    return (f"a nick has 1 to {NICK_MAX} characters, none of them white space, control characters or "
            f"{NICK_SEPARATOR!r}")


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
    """Signs and checks session cookie values (itsdangerous: HMAC-SHA256 with a derived, salted key)."""

    def __init__(self, secret: str, *, max_age_s: int, clock: Callable[[], float] = time.time) -> None:
        self.max_age_s = max_age_s
        self._signer = _ClockedSigner(secret, salt="likeness.session", digest_method=hashlib.sha256, clock=clock)
        # Cookies signed before itsdangerous (`<user>.<issued>.<hmac>` keyed with the secret itself) stay
        # good for their lifetime, so nobody loses their anonymous pictures on upgrade. Remove this path
        # (and `_legacy`) once every such cookie is past `max_age_s` after the upgrade.
        self._legacy = Signer(secret, key_derivation="none", digest_method=hashlib.sha256)
        self._clock = clock

    def sign(self, user_id: str) -> str:
        return self._signer.sign(user_id).decode()

    def verify(self, value: str) -> str | None:
        """The user id of a genuine, unexpired cookie; None otherwise."""
        try:
            user_id = self._signer.unsign(value, max_age=self.max_age_s + 60).decode()
        except BadSignature:
            user_id = self._verify_legacy(value)
        return user_id if user_id is not None and _USER_ID.match(user_id) else None

    def _verify_legacy(self, value: str) -> str | None:
        try:
            user_id, _, issued = self._legacy.unsign(value).decode().partition(".")
            age = self._clock() - int(issued)
        except (BadSignature, ValueError):
            return None
        return user_id if 0 <= age <= self.max_age_s + 60 else None


class _ClockedSigner(TimestampSigner):
    """itsdangerous' TimestampSigner on an injectable clock (tests move time instead of sleeping), with its
    derived key kept."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock
        self._derived: dict[bytes, bytes] = {}

    def get_timestamp(self) -> int:
        return int(self._clock())

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        # The salted key is the same for every cookie: derive it once per secret, not on every request
        # (that extra HMAC made signing and checking twice as slow as the hand-written code it replaced).
        secret = self.secret_key if secret_key is None else want_bytes(secret_key)
        if (key := self._derived.get(secret)) is None:
            key = self._derived[secret] = super().derive_key(secret)
        return key


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
