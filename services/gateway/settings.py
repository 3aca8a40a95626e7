"""The gateway service's settings: the shared runtime settings plus its own (prefix LIKENESS_GATEWAY_).

Every field of its own starts with `gateway_`, so `LIKENESS_GATEWAY_SESSION_SECRET` sets
`gateway_session_secret` and nothing collides with another service's variables.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from services.runtime.links import DEFAULT_LINK_SECRET, check_link_secret
from services.runtime.settings import RuntimeSettings

__all__ = ["DEFAULT_SESSION_SECRET", "GatewaySettings"]

# Good enough to sign a developer's cookies; refused in production, where it would be public knowledge.
DEFAULT_SESSION_SECRET = "likeness-dev-session-secret-not-for-production"
_MIN_SECRET_CHARS = 32


class GatewaySettings(RuntimeSettings):
    """Settings of the gateway service: sessions, limits, uploads and live streams."""

    service_name: str = "gateway"

    # Sessions: the browser's cookie is signed with this secret (HMAC-SHA256).
    gateway_session_secret: SecretStr = SecretStr(DEFAULT_SESSION_SECRET)
    gateway_session_max_age_s: int = Field(default=30 * 24 * 3600, ge=60)
    # None: Secure cookies in prod only (plain http on a developer's machine must keep working).
    gateway_cookie_secure: bool | None = None

    # Pictures an anonymous session may ask for before it must sign up or log in; None: no limit.
    gateway_anonymous_image_limit: int | None = Field(default=10, ge=0)

    # Per-user token bucket (per process): a sustained rate and the burst a page load may spend.
    gateway_rate_per_s: float = Field(default=20.0, gt=0)
    gateway_rate_burst: float = Field(default=120.0, ge=1)

    # Bots (a key that speaks for many people, each a nick): each nick's own token bucket (the bot's key
    # is charged too), and pictures a nick may ask for per window (None: no limit).
    gateway_nick_rate_per_s: float = Field(default=5.0, gt=0)
    gateway_nick_rate_burst: float = Field(default=30.0, ge=1)
    gateway_nick_image_limit: int | None = Field(default=None, ge=1)
    gateway_nick_image_window_s: float = Field(default=24 * 3600.0, gt=0)

    # Uploads: refused before decoding when over these; a face photo needs no more.
    gateway_upload_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    gateway_upload_max_pixels: int = Field(default=40_000_000, gt=0)
    gateway_upload_min_side: int = Field(default=64, ge=1)
    # The face check of an uploaded photo (a request to the facecheck service over core NATS).
    gateway_facecheck_timeout_s: float = Field(default=20.0, gt=0)

    # How long to wait for the chat service to answer a character command.
    gateway_command_timeout_s: float = Field(default=15.0, gt=0)
    # How long a streamed chat reply may take in all.
    gateway_chat_timeout_s: float = Field(default=180.0, gt=0)

    # Server-Sent Events: a comment line this often keeps proxies from closing an idle stream,
    # and each tick also re-reads the log, so a stream heals itself after a missed live message.
    gateway_sse_heartbeat_s: float = Field(default=15.0, gt=0)
    # Live messages a slow client may have waiting before it is resynchronised from the log.
    gateway_sse_queue_size: int = Field(default=1000, ge=10)
    # Runtime settings with the gateway's own defaults (see RuntimeSettings): thousands of SSE clients.
    http_backlog: int = Field(default=8192, ge=16, le=65535)
    gc_first_generation: int = Field(default=50_000, ge=100)
    # Preview frames larger than this (base64 characters) are shrunk before they are streamed.
    gateway_preview_max_chars: int = Field(default=96 * 1024, ge=1024)

    # GET /wait/{job}: the default and the longest wait a caller may ask for.
    gateway_wait_default_s: float = Field(default=60.0, gt=0)
    gateway_wait_max_s: float = Field(default=600.0, gt=0)

    # Thumbnails (?thumb=1): the longest side, and how many bytes of them one process keeps.
    gateway_thumb_side: int = Field(default=256, ge=16, le=2048)
    gateway_thumb_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)

    # Checks the signed image links the delivery service sends (GET /links/images/...): one variable,
    # LIKENESS_IMAGE_LINK_SECRET, for both services. Unset: a development default, and none in prod
    # (where the links then answer 404 until it is set).
    image_link_secret: SecretStr | None = None

    # Read models: how often the projector looks for new events when nothing woke it.
    gateway_projector_poll_s: float = Field(default=1.0, gt=0)
    gateway_projector_batch: int = Field(default=500, ge=1, le=10_000)
    # After being woken, wait this long so a burst of events is folded in one pass (not one pass each).
    gateway_projector_debounce_s: float = Field(default=0.05, ge=0, le=5)

    # Voice (POST /chat/voice): the transcriber that turns a recording into the message's text.
    # "pocketsphinx": the embedded offline recognizer (English; its model ships inside its wheel);
    # "openai": any OpenAI-compatible /v1/audio/transcriptions server (OpenAI, Groq, speaches, whisper.cpp).
    gateway_voice_backend: Literal["pocketsphinx", "openai"] = "pocketsphinx"
    # None with the "openai" backend: OpenAI's own API (then a key is required).
    gateway_voice_base_url: str | None = None
    gateway_voice_model: str = Field(default="whisper-1", min_length=1)
    gateway_voice_api_key: SecretStr = SecretStr("")
    # A language hint (ISO 639-1, e.g. "en") for the server; None lets it detect the language.
    gateway_voice_language: str | None = None
    gateway_voice_timeout_s: float = Field(default=30.0, gt=0)
    # Recordings over these are refused before they are transcribed.
    gateway_voice_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    gateway_voice_max_seconds: float = Field(default=60.0, gt=0, le=600)
    # A recording whose loudest 20 ms stay below this level (dBFS) holds no speech: refused untranscribed.
    gateway_voice_min_level_dbfs: float = Field(default=-45.0, ge=-96, le=0)
    # The offline recognizer holds the GIL while it decodes, so it runs in worker processes, this many.
    gateway_voice_workers: int = Field(default=1, ge=1, le=32)
    # The one gateway setting without the gateway_ prefix: LIKENESS_KEEP_VOICE is the privacy switch's
    # documented name. False: a recording is transcribed and dropped (only its sha256 is recorded).
    keep_voice: bool = False

    @field_validator("gateway_anonymous_image_limit", "gateway_nick_image_limit", mode="before")
    @classmethod
    def _blank_is_unlimited(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value

    @field_validator("gateway_voice_base_url", "gateway_voice_language", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _voice_server_reachable(self) -> GatewaySettings:
        if (self.gateway_voice_backend == "openai" and self.gateway_voice_base_url is None
                and not self.gateway_voice_api_key.get_secret_value()):
            raise ValueError("LIKENESS_GATEWAY_VOICE_BACKEND=openai needs LIKENESS_GATEWAY_VOICE_BASE_URL (a "
                             "self-hosted server) or LIKENESS_GATEWAY_VOICE_API_KEY (OpenAI's own API)")
        return self

    @model_validator(mode="after")
    def _secret_fit_for_environment(self) -> GatewaySettings:
        if self.image_link_secret is not None:
            check_link_secret(self.image_link_secret.get_secret_value(), self.environment)
        secret = self.gateway_session_secret.get_secret_value()
        if self.environment == "prod":
            if secret == DEFAULT_SESSION_SECRET:
                raise ValueError("LIKENESS_GATEWAY_SESSION_SECRET must be set in prod: the default secret is public")
            if len(secret) < _MIN_SECRET_CHARS:
                raise ValueError(f"LIKENESS_GATEWAY_SESSION_SECRET must have at least {_MIN_SECRET_CHARS} characters")
        return self

    @property
    def link_secret(self) -> str | None:
        """The image links' secret; None in prod until LIKENESS_IMAGE_LINK_SECRET is set."""
        if self.image_link_secret is not None:
            return self.image_link_secret.get_secret_value()
        return None if self.environment == "prod" else DEFAULT_LINK_SECRET

    @property
    def cookie_secure(self) -> bool:
        return self.environment == "prod" if self.gateway_cookie_secure is None else self.gateway_cookie_secure
