"""Transcription by any OpenAI-compatible `/v1/audio/transcriptions` server, through the openai SDK:
OpenAI (whisper-1, gpt-4o-transcribe), Groq, self-hosted faster-whisper (speaches), whisper.cpp's server.

The recording goes as it came (the server decodes it), named by its sniffed format: servers go by the
file name's extension. A 5xx or a dropped connection is tried once more within the deadline (the call
is idempotent and someone is waiting); a 4xx is the server refusing this recording, said as a 422.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai

from services.gateway.errors import GatewayError, Unavailable, Unprocessable, UpstreamTimeout
from services.gateway.voice.audio import Recording

__all__ = ["OpenAICompatible"]

_CONNECT_TIMEOUT_S = 5.0
_TRIES = 2
_REFUSALS = (400, 413, 415, 422)
_SETUP_ERRORS = (401, 403, 404)


class OpenAICompatible:
    backend = "openai"

    def __init__(self, *, base_url: str | None, model: str, api_key: str = "", language: str | None = None,
                 timeout_s: float = 30.0, http_client: Any = None) -> None:
        self.model, self.language, self.timeout_s = model, language, timeout_s
        self.where = base_url or "OpenAI's API"
        timeout = openai.Timeout(timeout_s, connect=min(_CONNECT_TIMEOUT_S, timeout_s))
        # Self-hosted servers ignore the key, but the SDK insists on one. It never retries on its own: we do.
        self._sdk = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout,
                                       max_retries=0, http_client=http_client)

    async def transcribe(self, recording: Recording) -> str:
        options: dict[str, Any] = {"language": self.language} if self.language else {}
        upload = (f"voice.{recording.format.extension}", recording.data, recording.format.media_type)
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(1, _TRIES + 1):
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    result = await self._sdk.audio.transcriptions.create(
                        model=self.model, file=upload, response_format="json", **options)
                # A server that ignores response_format answers plain text, which the SDK hands over as is.
                return result if isinstance(result, str) else str(getattr(result, "text", "") or "")
            except (TimeoutError, openai.APITimeoutError):
                raise UpstreamTimeout(f"the transcription server ({self.where}) gave no transcript within "
                                      f"{self.timeout_s:g}s; send the message again",
                                      code="transcription_timeout") from None
            except openai.APIStatusError as exc:
                error = self._status_error(exc)
                if exc.status_code < 500 or attempt == _TRIES:
                    raise error from None
            except openai.APIConnectionError as exc:
                if attempt == _TRIES:
                    raise Unavailable(f"the transcription server ({self.where}) cannot be reached ({exc}); try again "
                                      "in a moment", code="transcription_unavailable") from None
        raise AssertionError("unreachable")

    def _status_error(self, exc: openai.APIStatusError) -> GatewayError:
        detail = _message(exc)
        if exc.status_code in _REFUSALS:
            return Unprocessable(f"the transcription server refused the recording (HTTP {exc.status_code}: {detail}); "
                                 "record it again, or in another format", code="transcription_refused")
        if exc.status_code in _SETUP_ERRORS:
            # Nothing the caller can change: the gateway's key, model or URL is wrong.
            return Unavailable(f"the transcription server ({self.where}) refused the gateway (HTTP {exc.status_code}: "
                               f"{detail}); its LIKENESS_GATEWAY_VOICE_* settings need fixing by whoever runs it",
                               code="transcription_unavailable")
        return Unavailable(f"the transcription server ({self.where}) answered HTTP {exc.status_code}: {detail}; try "
                           "again in a moment", code="transcription_unavailable")

    async def aclose(self) -> None:
        await self._sdk.close()


def _message(exc: openai.APIStatusError) -> str:
    """The server's own words, one line of them: some put a whole traceback in the message."""
    body = exc.body
    text = exc.message
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error.get("error"), str):  # whisper.cpp: {"error": "..."}
            text = error["error"]
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines else "no message")
    return line[:300]
