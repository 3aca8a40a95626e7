"""The three ways out, each answering a `SendResult`: the Telegram Bot API (python-telegram-bot), and a
JSON POST for Google Chat incoming webhooks and signed webhooks (httpx).

An answer is sorted the same way everywhere: 2xx delivered; 429, 5xx, a timeout or no connection is
retried (a Retry-After, or Telegram's `retry_after`, is passed on); anything else is rejected for
good. Redirects are not followed (a 3xx is rejected): a webhook must name its final address.
"""

from __future__ import annotations

import logging
import time
import warnings
from datetime import timedelta
from email.utils import parsedate_to_datetime

import httpx
from telegram import Bot
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from services.delivery.attempts import SendResult
from services.delivery.settings import DeliverySettings
from services.delivery.urls import UrlRefused, vet

__all__ = ["HttpSender", "TelegramSender", "retry_after_seconds"]

log = logging.getLogger(__name__)

_EXCERPT_CHARS = 300
# python-telegram-bot's DEBUG lines print the Bot API URL, and the URL holds the bot token.
logging.getLogger("telegram").setLevel(logging.INFO)
# Its RetryAfter warns, as it is made, that `retry_after` will become a timedelta; `_seconds` reads both forms.
warnings.filterwarnings("ignore", message=".*`retry_after` will be of type", category=PTBDeprecationWarning)


def _clean(text: str, secret: str | None = None) -> str:
    """Text fit for an event: no secret, no NUL (Postgres refuses it), not too long."""
    if secret:
        text = text.replace(secret, "<bot token>")
    return text.replace("\x00", "")[:_EXCERPT_CHARS]


def retry_after_seconds(value: str | None, now_s: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now_s)
    except (TypeError, ValueError):
        return None


class HttpSender:
    """POSTs JSON to a user's URL, after checking (and pinning) the address it goes to."""

    def __init__(self, settings: DeliverySettings) -> None:
        self._allow_private = settings.webhook_allow_private
        self._dns_timeout_s = settings.delivery_dns_timeout_s
        # No proxies from the environment (they would bypass the address check), and no pooled connections
        # (a pooled connection is keyed by address, not by host name, so it could serve another host).
        self._client = httpx.AsyncClient(timeout=settings.delivery_timeout_s, follow_redirects=False, trust_env=False,
                                         limits=httpx.Limits(max_keepalive_connections=0))

    async def close(self) -> None:
        await self._client.aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        started = time.monotonic()
        try:
            target = await vet(url, allow_private=self._allow_private, timeout_s=self._dns_timeout_s)
        except UrlRefused as exc:
            return SendResult("retry" if exc.temporary else "rejected", error=str(exc))
        extensions = {"sni_hostname": target.server_name} if target.server_name else {}
        try:
            response = await self._client.post(
                target.url, content=body, extensions=extensions,
                headers={**headers, "Host": target.host_header, "Content-Type": "application/json; charset=utf-8",
                         "User-Agent": "Likeness-Delivery/1"})
        except httpx.TimeoutException as exc:
            return SendResult("retry", error=f"no answer in time ({type(exc).__name__})", duration_ms=_ms(started))
        except httpx.TransportError as exc:
            return SendResult("retry", error=f"could not connect: {_clean(str(exc) or type(exc).__name__)}",
                              duration_ms=_ms(started))
        status = response.status_code
        excerpt = _clean(response.text)
        if 200 <= status < 300:
            return SendResult("delivered", status_code=status, duration_ms=_ms(started))
        error = f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"
        if status == 429 or status >= 500:
            return SendResult("retry", status_code=status, error=error, duration_ms=_ms(started),
                              retry_after_s=retry_after_seconds(response.headers.get("retry-after"), time.time()))
        if 300 <= status < 400:
            error += f" (a redirect to {response.headers.get('location', '?')}: register the final URL)"
        return SendResult("rejected", status_code=status, error=error, duration_ms=_ms(started))


class TelegramSender:
    """Sends with one bot; the token stays in here (and out of every result's text)."""

    def __init__(self, settings: DeliverySettings) -> None:
        token = settings.delivery_telegram_bot_token
        self._token = token.get_secret_value() if token else None
        self._request: HTTPXRequest | None = None
        self._bot: Bot | None = None
        if self._token:
            timeout = settings.delivery_timeout_s
            self._request = HTTPXRequest(connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout,
                                         media_write_timeout=timeout, pool_timeout=timeout)
            self._bot = Bot(self._token, base_url=f"{settings.delivery_telegram_api_url.rstrip('/')}/bot",
                            request=self._request)

    @property
    def configured(self) -> bool:
        return self._bot is not None

    async def close(self) -> None:
        if self._request is not None:
            await self._request.shutdown()

    async def send_photo(self, chat_id: str, photo: bytes, caption: str) -> SendResult:
        assert self._bot is not None
        return await self._call(self._bot.send_photo(chat_id=chat_id, photo=photo, caption=caption))

    async def send_message(self, chat_id: str, text: str) -> SendResult:
        assert self._bot is not None
        return await self._call(self._bot.send_message(chat_id=chat_id, text=text))

    async def _call(self, request) -> SendResult:
        started = time.monotonic()
        try:
            await request
        except RetryAfter as exc:
            return SendResult("retry", status_code=429, error=_clean(str(exc), self._token),
                              retry_after_s=_seconds(exc), duration_ms=_ms(started))
        except InvalidToken as exc:
            log.error("Telegram refused the bot token: set LIKENESS_DELIVERY_TELEGRAM_BOT_TOKEN to the token "
                      "@BotFather gave, then replay the failed deliveries")
            return SendResult("rejected", status_code=401, error=_clean(str(exc), self._token),
                              duration_ms=_ms(started))
        except (BadRequest, Forbidden, ChatMigrated) as exc:
            status = 403 if isinstance(exc, Forbidden) else 400
            return SendResult("rejected", status_code=status, error=_clean(f"Telegram: {exc}", self._token),
                              duration_ms=_ms(started))
        except NetworkError as exc:
            # Telegram's 5xx, a timeout, or no connection: python-telegram-bot says all three this way.
            return SendResult("retry", error=_clean(f"Telegram: {exc}", self._token), duration_ms=_ms(started))
        except TelegramError as exc:
            return SendResult("rejected", error=_clean(f"Telegram: {exc}", self._token), duration_ms=_ms(started))
        return SendResult("delivered", status_code=200, duration_ms=_ms(started))


def _seconds(exc: RetryAfter) -> float:
    # An int or a timedelta, depending on PTB_TIMEDELTA.
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
