"""Sessions, API keys, rate limits and the settings that guard them."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import ValidationError

from services.gateway.auth import (
    RateLimiter,
    SessionSigner,
    hash_key,
    new_anonymous_id,
    new_api_key,
    new_user_id,
)
from services.gateway.settings import DEFAULT_SESSION_SECRET, GatewaySettings


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_session_cookie_verifies_until_it_is_tampered_with_or_expires() -> None:
    clock = Clock(1_000_000)
    signer = SessionSigner("s" * 40, max_age_s=3600, clock=clock)
    user = new_anonymous_id()
    value = signer.sign(user)
    clock.now = 1_000_100
    assert signer.verify(value) == user
    clock.now = 1_000_000 + 3600 + 61
    assert signer.verify(value) is None  # expired
    clock.now = 999_000
    assert signer.verify(value) is None  # issued in the future
    clock.now = 1_000_100
    other = new_user_id()
    assert signer.verify(value.replace(user, other)) is None  # another user's id, same mac
    assert SessionSigner("t" * 40, max_age_s=3600, clock=clock).verify(value) is None  # another secret
    assert signer.verify("garbage") is None
    assert signer.verify("evil.1000000.x") is None
    forged = SessionSigner("s" * 40, max_age_s=3600, clock=clock).sign("not-a-user-id")
    assert signer.verify(forged) is None  # genuine signature, but no user id of ours


def test_a_cookie_signed_before_the_upgrade_stays_good_until_it_expires() -> None:
    """The hand-written format (`<user>.<issued>.<HMAC-SHA256(secret, user.issued)>`) an older gateway set."""
    secret, user, issued = "s" * 40, new_anonymous_id(), 1_000_000
    mac = hmac.new(secret.encode(), f"{user}.{issued}".encode(), hashlib.sha256).digest()
    legacy = f"{user}.{issued}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    clock = Clock(issued + 100)
    signer = SessionSigner(secret, max_age_s=3600, clock=clock)
    assert signer.verify(legacy) == user
    assert SessionSigner("t" * 40, max_age_s=3600, clock=clock).verify(legacy) is None
    assert signer.verify(legacy.replace(user, new_anonymous_id())) is None
    clock.now = issued + 3600 + 61
    assert signer.verify(legacy) is None  # expired like any other
    assert signer.sign(user) != legacy and "." in signer.sign(user)


def test_api_keys_are_random_and_stored_as_their_hash() -> None:
    key = new_api_key()
    assert key.startswith("lk_") and len(key) > 40 and key != new_api_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(2.0, 3)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a", now=0.0)
    assert wait == pytest.approx(0.5)
    assert limiter.take("b", now=0.0) == 0.0  # buckets are per user
    assert limiter.take("a", now=0.5) == 0.0  # one token refilled
    assert limiter.take("a", cost=0.2, now=0.5) > 0
    assert limiter.take("a", cost=0.2, now=0.7) == 0.0


def test_the_limiter_forgets_the_oldest_buckets_beyond_its_bound() -> None:
    limiter = RateLimiter(1.0, 1, max_keys=2)
    for key in "abc":
        limiter.take(key, now=0.0)
    assert limiter.take("a", now=0.0) == 0.0  # forgotten, so full again


def test_prod_refuses_the_default_or_a_short_session_secret() -> None:
    with pytest.raises(ValidationError, match="must be set in prod"):
        GatewaySettings(environment="prod")
    with pytest.raises(ValidationError, match="at least 32"):
        GatewaySettings(environment="prod", gateway_session_secret="short")
    prod = GatewaySettings(environment="prod", gateway_session_secret="x" * 48)
    assert prod.cookie_secure is True
    dev = GatewaySettings()
    assert dev.gateway_session_secret.get_secret_value() == DEFAULT_SESSION_SECRET and dev.cookie_secure is False


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_GATEWAY_ANONYMOUS_IMAGE_LIMIT", "")
    monkeypatch.setenv("LIKENESS_GATEWAY_RATE_PER_S", "3.5")
    settings = GatewaySettings()
    assert settings.gateway_anonymous_image_limit is None and settings.gateway_rate_per_s == 3.5
    assert settings.service_name == "gateway"
