"""Sessions, API keys, rate limits and the settings that guard them."""

from __future__ import annotations

import hashlib

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


def test_a_session_cookie_verifies_until_it_is_tampered_with_or_expires() -> None:
    signer = SessionSigner("s" * 40, max_age_s=3600)
    user = new_anonymous_id()
    value = signer.sign(user, now=1_000_000)
    assert signer.verify(value, now=1_000_100) == user
    assert signer.verify(value, now=1_000_000 + 3600 + 61) is None  # expired
    assert signer.verify(value, now=999_000) is None  # issued in the future
    other = new_user_id()
    assert signer.verify(value.replace(user, other), now=1_000_100) is None  # another user's id, same mac
    assert SessionSigner("t" * 40, max_age_s=3600).verify(value, now=1_000_100) is None  # another secret
    assert signer.verify("garbage", now=1_000_100) is None
    assert signer.verify("evil.1000000.x", now=1_000_100) is None


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
