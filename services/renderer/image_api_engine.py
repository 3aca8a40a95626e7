"""A render engine over an OpenAI-compatible image edit API: one `POST {base_url}/images/edits` per attempt.

It speaks the wire format itself (httpx multipart) instead of using the openai SDK: the renderer's install
group does not carry `openai` (only chat and planner do), openai 3 runs on httpx2 and so could not share
the injected `httpx.AsyncClient`, the SDK does not fetch the `url` answers some compatible providers send,
and one multipart POST needs nothing else from it.

The request and answer logic (`nearest_size`, `edit_prompt`, `edit_form`, `request_hash`, `cost_usd`,
`read_answer`, `failure`) is pure; `ImageEditApiEngine.render` only does the I/O. Failures:

    connection refused or reset, HTTP 401/403/404/408/409/429/5xx    BackendUnreachable: another engine may take it
    HTTP 400/413/422, a moderation block included                    RenderError("validation"): no retry elsewhere
    the deadline passed                                              RenderError("timeout")
    an answer without an image (or an image URL that cannot be read) RenderError("execution")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

import httpx
from contracts.render import RenderStep
from services.renderer.engine import Progress, RenderOutput, RenderUpdate, Tick
from services.renderer.errors import BackendUnreachable, ErrorKind, RenderError
from services.renderer.images import image_kind

__all__ = ["API_SIZES", "GPT_IMAGE_1_PRICES", "ImageEditApiEngine", "cost_usd", "edit_form", "edit_prompt", "failure",
           "nearest_size", "read_answer", "request_hash"]

log = logging.getLogger(__name__)

# The sizes every GPT image model takes (gpt-image-2 also takes others, which a fixed `size` may name).
API_SIZES: dict[str, tuple[int, int]] = {"1024x1024": (1024, 1024), "1536x1024": (1536, 1024),
                                         "1024x1536": (1024, 1536)}
# USD per 1M tokens as https://developers.openai.com/api/docs/models/gpt-image-1 and the pricing page list them:
# text input $5.00, image input $10.00, image output $40.00. Cached input ($1.25 / $2.50) is not priced: the
# images API does not report cached tokens. The page marks gpt-image-1 deprecated; other models need their prices.
GPT_IMAGE_1_PRICES: dict[str, float] = {"text_input": 5.0, "image_input": 10.0, "image_output": 40.0}
_PRICE_KEYS = frozenset({*GPT_IMAGE_1_PRICES, "text_output"})
# A dead host should fail fast (and go elsewhere) rather than use the whole deadline.
_CONNECT_TIMEOUT_S = 5.0
# Refusals of the request as made: the same request fails the same way on any provider.
_REFUSED = frozenset({400, 413, 422})
# This provider cannot serve now or at all (bad key, unverified organisation, unknown model, busy, down).
_ELSEWHERE = frozenset({401, 403, 404, 408, 409, 429})
_SIZE = re.compile(r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$")


def nearest_size(width: int, height: int) -> str:
    """The API size whose aspect ratio is nearest to width:height (compared in log space; ties go square)."""
    target = math.log(width / height)
    return min(API_SIZES, key=lambda s: (abs(math.log(API_SIZES[s][0] / API_SIZES[s][1]) - target),
                                         s != "1024x1024"))


def edit_prompt(prompt: str, negative_prompt: str = "") -> str:
    """The instruction, and what to avoid: the API has no negative prompt, so it is said in words."""
    negative = negative_prompt.strip()
    return f"{prompt.strip()}\nAvoid: {negative}" if negative else prompt.strip()


def edit_form(model: str, prompt: str, size: str, quality: str | None) -> dict[str, str]:
    """The text fields of the multipart request (the image goes as the `image` file part)."""
    # `model` always: without it the API assumes dall-e-2 and refuses the GPT image sizes. No
    # `response_format`: GPT image models reject it (they always answer b64_json). PNG because the output
    # is the next step's input, and a lossy copy of a copy loses the face.
    form = {"model": model, "prompt": prompt, "n": "1", "size": size, "output_format": "png"}
    if quality:
        form["quality"] = quality
    return form


def request_hash(model: str, prompt: str, size: str, quality: str | None) -> str:
    """A short hash of what was asked: the same request hashes the same."""
    return hashlib.sha256(json.dumps([model, prompt, size, quality]).encode()).hexdigest()[:16]


def cost_usd(usage: Any, prices: Mapping[str, float] | None) -> float | None:
    """What `usage` (the answer's token counts) cost at `prices` (USD per 1M tokens); None if either is unknown."""
    if prices is None or not isinstance(usage, Mapping):
        return None
    total_in, total_out = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    if total_out is None:
        return None
    details = usage.get("input_tokens_details") if isinstance(usage.get("input_tokens_details"), Mapping) else {}
    text_in, image_in = _count(details.get("text_tokens")), _count(details.get("image_tokens"))
    total_in = total_in or 0
    if text_in is None and image_in is None:
        # No split reported: an edit's input is mostly the picture, and overstating beats understating.
        text_in, image_in = 0, total_in
    elif image_in is None:
        image_in = max(0, total_in - (text_in or 0))
    elif text_in is None:
        text_in = max(0, total_in - image_in)
    out_details = usage.get("output_tokens_details") if isinstance(usage.get("output_tokens_details"), Mapping) else {}
    # Newer models report text output (the model's reasoning) apart; priced apart only when a price is given.
    text_out = (_count(out_details.get("text_tokens")) or 0) if "text_output" in prices else 0
    dollars = (text_in * prices["text_input"] + image_in * prices["image_input"]
               + (total_out - text_out) * prices["image_output"] + text_out * prices.get("text_output", 0.0))
    return round(dollars / 1_000_000, 6)


def read_answer(body: Any) -> bytes | str:
    """The image in an answer: its bytes (`b64_json`) or the URL to fetch it from; RenderError("execution") if none."""
    data = body.get("data") if isinstance(body, Mapping) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], Mapping) else {}
    if isinstance(first.get("b64_json"), str) and first["b64_json"]:
        try:
            return base64.b64decode(first["b64_json"], validate=True)
        except (binascii.Error, ValueError):
            raise RenderError("execution", "the answer's b64_json is not valid base64") from None
    if isinstance(first.get("url"), str) and first["url"].startswith(("http://", "https://")):
        return first["url"]
    message, _ = _provider_message(body)
    raise RenderError("execution", f"the answer holds no image (neither data[0].b64_json nor data[0].url): {message}")


def failure(status: int, body: Any, retry_after: str | None, backend: str) -> RenderError:
    """The error for an HTTP error answer, in one line: status, the provider's code and message, and when to retry."""
    message, code = _provider_message(body)
    line = f"HTTP {status}{f' {code}' if code else ''} from {backend}: {message}"
    if retry_after:
        line += f" (retry after {retry_after} s)"
    if status in _REFUSED:
        return RenderError("validation", line, backend=backend)
    if status in _ELSEWHERE or status >= 500:
        return BackendUnreachable(line, backend=backend)
    return RenderError("execution", line, backend=backend)


class ImageEditApiEngine:
    """Edits the input image with `model` at `base_url`; `http` is shared and closed by its owner.

    `size="auto"` picks the API size nearest the job's width x height; any other value is sent as it is.
    `prices` (USD per 1M tokens: text_input, image_input, image_output, optional text_output) default to
    gpt-image-1's for that model; for another model without prices the cost is None.
    """

    name = "openai-images"
    # It edits a picture it is sent; a text-to-image job (no picture) is routed to another engine.
    edits_only = True
    # The edit API takes one picture and a prompt, no workflow: it cannot run a face-restore template.
    takes_reference = False

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, api_key: str, model: str = "gpt-image-1",
                 deadline_s: float, size: str = "auto", quality: str | None = None,
                 prices: dict[str, float] | None = None) -> None:
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, not {deadline_s}")
        if not _SIZE.match(size):
            raise ValueError(f"size must be 'auto' or WIDTHxHEIGHT such as '1024x1536', not {size!r}")
        if prices is not None and (unknown := set(prices) - _PRICE_KEYS):
            raise ValueError(f"unknown price keys {sorted(unknown)}; known: {sorted(_PRICE_KEYS)}")
        self.http, self.base_url, self.api_key, self.model = http, base_url.rstrip("/"), api_key, model
        self.deadline_s, self.size, self.quality = deadline_s, size, quality
        default = GPT_IMAGE_1_PRICES if model == "gpt-image-1" else None
        self.prices = {**GPT_IMAGE_1_PRICES, **prices} if prices is not None else default

    async def render(self, job: RenderStep, input_image: bytes | None, progress: Progress, *,
                     reference_image: bytes | None = None) -> RenderOutput:
        """Send the edit, read (or fetch) the image; see the module docstring for how failures map."""
        if input_image is None:
            raise RenderError("validation", "the image edit API only edits pictures; route text-to-image models "
                                            "(LIKENESS_RENDER_ROUTES) to comfyui or runpod")
        loop = asyncio.get_running_loop()
        began = loop.time()
        limit = min(job.deadline_s or self.deadline_s, self.deadline_s)
        prompt = edit_prompt(job.prompt, job.negative_prompt)
        size = nearest_size(job.width, job.height) if self.size == "auto" else self.size
        ext, input_type = _sniff(input_image, "validation", "the input image")
        form = edit_form(self.model, prompt, size, self.quality)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        await _tell(progress, Tick(0, 1))
        try:
            async with asyncio.timeout(limit):
                answer = await self.http.post(
                    f"{self.base_url}/images/edits", data=form, headers=headers,
                    files={"image": (f"input.{ext}", input_image, input_type)}, timeout=_timeout(limit))
                executed = loop.time()
                if answer.status_code >= 400:
                    retry_after = answer.headers.get("retry-after") or _ms_as_s(answer.headers.get("retry-after-ms"))
                    raise failure(answer.status_code, _json(answer), retry_after, self.base_url)
                body = _json(answer)
                image = read_answer(body)
                if isinstance(image, str):
                    image = await self._fetch(image, limit)
                _, media_type = _sniff(image, "execution", "the answer's image")
        except TimeoutError:
            raise RenderError("timeout", f"no image from {self.base_url} within the render deadline of {limit:g} s",
                              backend=self.base_url) from None
        except httpx.TransportError as exc:
            raise _transport_failure(exc, self.base_url, limit) from None
        except RenderError as exc:
            raise exc.at(self.base_url)
        done = loop.time()
        await _tell(progress, Tick(1, 1))
        timings = {"execute": _ms(executed - began), "fetch": _ms(done - executed), "total": _ms(done - began)}
        return RenderOutput(image, media_type, request_hash(self.model, prompt, size, self.quality), self.base_url,
                            self.name, timings, cost_usd=cost_usd(body.get("usage"), self.prices))

    async def _fetch(self, url: str, limit: float) -> bytes:
        """The image a `url` answer points at; without our key, since the URL may be another host's."""
        where = url.split("?", 1)[0]  # a signed URL's query is a credential: keep it out of reasons and logs
        try:
            fetched = await self.http.get(url, timeout=_timeout(limit))
        except httpx.TimeoutException as exc:
            raise RenderError("timeout", f"fetching the image at {where} ran past the deadline: "
                              f"{type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise RenderError("execution", f"cannot fetch the image at {where}: {type(exc).__name__}: {exc}") from None
        if fetched.status_code != 200:
            raise RenderError("execution", f"cannot fetch the image at {where}: HTTP {fetched.status_code}")
        return fetched.content


def _transport_failure(exc: httpx.TransportError, backend: str, limit: float) -> RenderError:
    """Connecting failed (another engine may take the job), or the answer did not come in time."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return RenderError("timeout", f"no answer from {backend} within {limit:g} s: {type(exc).__name__}",
                           backend=backend)
    return BackendUnreachable(f"cannot reach {backend}: {type(exc).__name__}: {exc}".rstrip(": "), backend=backend)


def _timeout(limit: float) -> httpx.Timeout:
    return httpx.Timeout(limit, connect=min(_CONNECT_TIMEOUT_S, limit))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _provider_message(body: Any) -> tuple[str, str | None]:
    """(message, code) from OpenAI's `{"error": {...}}` shape, or the start of whatever else came."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping) and error.get("message"):
        message, code = str(error["message"]), error.get("code") or error.get("type")
    elif isinstance(error, str):
        message, code = error, None
    else:
        message, code = (body if isinstance(body, str) else json.dumps(body)) or "(empty body)", None
    return " ".join(message.split())[:500], str(code) if code else None


def _sniff(data: bytes, kind: ErrorKind, what: str) -> tuple[str, str]:
    if (found := image_kind(data)) is None:
        raise RenderError(kind, f"{what} is not a PNG, JPEG or WebP picture")
    return found


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000, 1)


def _ms_as_s(value: str | None) -> str | None:
    try:
        return f"{float(value) / 1000:g}" if value else None
    except ValueError:
        return None


async def _tell(progress: Progress, update: RenderUpdate) -> None:
    # Progress is a courtesy: a failing listener must never fail the render.
    try:
        await progress(update)
    except Exception:  # noqa: BLE001
        log.exception("progress listener failed")
