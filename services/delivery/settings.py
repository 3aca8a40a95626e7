"""The delivery service's settings: the shared runtime settings plus its own (prefix LIKENESS_).

Its own fields start with `delivery_`. Three are shared by name with other services, so one
variable sets them everywhere: `public_base_url` and `image_link_secret` (the gateway serves the
links this service writes) and `webhook_allow_private`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from services.runtime.links import DEFAULT_LINK_SECRET, check_link_secret
from services.runtime.settings import RuntimeSettings

__all__ = ["DEFAULT_DELIVERY_KEY", "DeliverySettings"]

# Webhook signing secrets derive from this key; refused in prod, where it would be public knowledge.
DEFAULT_DELIVERY_KEY = "likeness-dev-delivery-key-not-for-production"
_MIN_KEY_CHARS = 32


class DeliverySettings(RuntimeSettings):
    """Settings of the delivery service: destinations' clients, retries, leases and links."""

    service_name: str = "delivery"

    # Telegram: the bot that sends (from @BotFather). Never logged and never in an event.
    delivery_telegram_bot_token: SecretStr | None = None
    # The Bot API server; a self-hosted one (or a test's fake) instead of Telegram's.
    delivery_telegram_api_url: str = "https://api.telegram.org"

    # Webhook signing secrets are HMAC-SHA256(key, endpoint and generation): none is ever stored.
    # Changing the key changes every endpoint's secret.
    delivery_secret_key: SecretStr = SecretStr(DEFAULT_DELIVERY_KEY)

    # One attempt: connect, send and read the answer (a Telegram photo upload included).
    delivery_timeout_s: float = Field(default=15.0, gt=0)
    # How long a claimed attempt is a replica's alone; after that another takes it over (the first died).
    delivery_lease_s: float = Field(default=60.0, gt=0)
    # Retries on 5xx, 429 and timeouts: the waits after attempt 1, 2, ... (the last repeats), stopping once
    # the window since the delivery was requested has passed. A Retry-After longer than the wait wins.
    delivery_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0], min_length=1)
    delivery_retry_window_s: float = Field(default=24 * 3600.0, gt=0)
    # Attempts in flight per replica.
    delivery_workers: int = Field(default=8, ge=1, le=256)
    # Resolving a webhook's host name (checked before every send).
    delivery_dns_timeout_s: float = Field(default=5.0, gt=0)
    # How long the image links in Google Chat cards and webhook bodies work.
    delivery_image_link_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)

    # Where the gateway is reachable from outside: the base of every image link.
    public_base_url: str = "http://127.0.0.1:8000"
    image_link_secret: SecretStr = SecretStr(DEFAULT_LINK_SECRET)
    # Development only: let webhook and Google Chat URLs reach loopback, private and link-local addresses.
    webhook_allow_private: bool = False

    @field_validator("delivery_telegram_bot_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("public_base_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("LIKENESS_PUBLIC_BASE_URL must be the gateway's http(s):// address as users reach it")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _fit_for_environment(self) -> DeliverySettings:
        if self.delivery_lease_s <= 2 * self.delivery_timeout_s:
            raise ValueError("LIKENESS_DELIVERY_LEASE_S must be more than twice LIKENESS_DELIVERY_TIMEOUT_S, or a slow "
                             "but live attempt would be taken over and sent twice")
        check_link_secret(self.image_link_secret.get_secret_value(), self.environment)
        if self.environment == "prod":
            key = self.delivery_secret_key.get_secret_value()
            if key == DEFAULT_DELIVERY_KEY or len(key) < _MIN_KEY_CHARS:
                raise ValueError(f"LIKENESS_DELIVERY_SECRET_KEY must be set in prod ({_MIN_KEY_CHARS}+ random "
                                 "characters): webhook secrets derive from it")
            if self.webhook_allow_private:
                raise ValueError("LIKENESS_WEBHOOK_ALLOW_PRIVATE=true is for development: in prod it would let "
                                 "users aim webhooks at the cluster's own network")
        return self
