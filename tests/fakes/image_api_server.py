"""A fake OpenAI image edit API: real HTTP on a real socket, the real multipart form, scripted misbehaviour.

In tests: `with FakeImageApi([Edit(), ErrorReply.rate_limited(20), Hang()]) as api:` then point a client at
`api.url` (ends in /v1) and read `api.requests`. Each request takes the next queued reply, else the default
(an edit). As a process (end-to-end tests):
`python -m tests.fakes.image_api_server --port 0 [--script script.json] [--api-key K] [--record requests.jsonl]`,
which prints `fake-image-api listening on http://127.0.0.1:PORT/v1` once it accepts connections. A script is
{"replies": [reply, ...], "default": reply}; a reply is "edit" | "url" | "empty" | "moderation" | "rate_limited"
| {"edit": {"url": bool, "usage": bool, "colour": [r, g, b], "delay_s": s, "expired": bool}} | {"hang": seconds}
| {"rate_limited": retry_after_s} | {"error": {"status": 500, "message": "...", "type": "...", "code": "..."}}.
`GET /_fake/requests` lists what was received, `POST /_fake/replies` (a JSON list) queues more.

Speaks `POST /v1/images/edits` as OpenAI serves gpt-image-1: multipart/form-data with `model`, `prompt`, `image`
(or several `image[]`), optional `mask`, `n`, `size`, `quality`, `output_format`, `background`; validated as the
real one does (OpenAI's `{"error": {...}}` body, HTTP 400 for a bad value, a missing field or an image part that is
not image/png, image/jpeg or image/webp; 401 for a wrong key); answered with the first input image recoloured and
resized to the size asked, as `b64_json` with a `usage` block. A `url` answer (as some compatible providers give)
points at `GET /v1/_fake/images/<id>`, which serves the image.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image, ImageOps

from tests.fakes.multipart import Part, parse_multipart
from tests.fakes.threaded_server import (
    Hang,
    ScriptedServer,
    process_arguments,
    read_script,
)

__all__ = ["SIZES", "Edit", "Empty", "ErrorReply", "FakeImageApi", "Hang", "ReplyLike", "create_app",
           "parse_multipart", "reply_from_json"]

SIZES = {"1024x1024": (1024, 1024), "1536x1024": (1536, 1024), "1024x1536": (1024, 1536)}
_QUALITIES = ("low", "medium", "high", "auto")
_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
# Output tokens of a square image by quality, as OpenAI's image generation guide tabulates them for
# gpt-image-1 (a portrait or landscape image costs about half as much again).
_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056}
# Input tokens of one input image at the default (low) input fidelity: a round figure of the right size.
_IMAGE_INPUT_TOKENS = 323


@dataclass(frozen=True)
class Edit:
    """A successful edit: the input recoloured (inverted, or tinted `colour`), as b64_json or as a `url`.

    A `url` is signed like a blob store's (`?se=...&sig=...`); `expired` makes it answer 403, as such a URL
    does after its hour.
    """

    url: bool = False
    usage: bool = True
    colour: tuple[int, int, int] | None = None
    delay_s: float = 0.0
    expired: bool = False
    # The input's colours kept (only resized): a face the face check still knows, for end-to-end chains.
    keep: bool = False


@dataclass(frozen=True)
class Empty:
    """HTTP 200 without an image (`data: []`), as a provider that dropped the output answers."""


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error with OpenAI's error body, and a Retry-After header when `retry_after_s` is set."""

    status: int
    message: str
    type: str = "server_error"
    code: str | None = None
    retry_after_s: int | None = None

    @classmethod
    def rate_limited(cls, retry_after_s: int = 20) -> ErrorReply:
        return cls(429, f"Rate limit reached for gpt-image-1 in organization org-fake on images per minute (IPM): "
                        f"Limit 5, Used 5, Requested 1. Please try again in {retry_after_s}s.", "requests",
                   "rate_limit_exceeded", retry_after_s)

    @classmethod
    def moderation(cls, categories: str = "sexual") -> ErrorReply:
        # The message and codes as OpenAI sends them for a blocked prompt, input or output.
        return cls(400, "Your request was rejected by the safety system. If you believe this is an error, contact "
                        f"us at help.openai.com and include the request ID req_fake. safety_violations=[{categories}].",
                   "image_generation_user_error", "moderation_blocked")

    @classmethod
    def server(cls, status: int = 500) -> ErrorReply:
        if status == 503:
            return cls(503, "The engine is currently overloaded, please try again later", "server_error")
        return cls(status, "The server had an error while processing your request. Sorry about that!")


ReplyLike = Edit | Empty | Hang | ErrorReply


def reply_from_json(value: Any) -> ReplyLike:
    """A reply from its script-file form."""
    match value:
        case "edit":
            return Edit()
        case "url":
            return Edit(url=True, usage=False)
        case "empty":
            return Empty()
        case "moderation":
            return ErrorReply.moderation()
        case "rate_limited":
            return ErrorReply.rate_limited()
        case {"edit": dict(edit)}:
            colour = edit.get("colour")
            return Edit(bool(edit.get("url", False)), bool(edit.get("usage", True)),
                        tuple(colour) if colour else None, float(edit.get("delay_s", 0.0)),
                        bool(edit.get("expired", False)), bool(edit.get("keep", False)))
        case {"hang": seconds}:
            return Hang(float(seconds))
        case {"rate_limited": seconds}:
            return ErrorReply.rate_limited(int(seconds))
        case {"error": dict(error)}:
            return ErrorReply(int(error.get("status", 500)), error.get("message", "scripted error"),
                              error.get("type", "server_error"), error.get("code"), error.get("retry_after_s"))
    raise ValueError(f"not a reply: {value!r}")


class FakeImageApi(ScriptedServer[ReplyLike]):
    """The fake server: replies queued, requests recorded, images kept for `url` answers; a context manager.

    `requests`: what each edit request held: `fields` (text parts), `images` and `mask` (file parts), `authorized`.
    """

    name = "fake-image-api"

    def __init__(self, replies: Iterable[ReplyLike] = (), *, default: ReplyLike = Edit(), api_key: str | None = None,
                 record: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(replies, host=host, port=port, record=record)
        self.default, self.api_key = default, api_key
        self.images: dict[str, tuple[bytes, str]] = {}

    @property
    def url(self) -> str:
        """The base URL a client takes (ends in /v1)."""
        return f"{self.base}/v1"

    def next_reply(self) -> ReplyLike:
        with self.lock:
            return self.replies.popleft() if self.replies else self.default

    def app(self) -> FastAPI:
        return create_app(self)


def _error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
           code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status,
                        headers=headers)


def _invalid(param: str, value: str, allowed: Iterable[str]) -> JSONResponse:
    quoted = [f"'{a}'" for a in allowed]
    listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    return _error(400, f"Invalid value: '{value}'. Supported values are: {listed}.", param=param, code="invalid_value")


def create_app(fake: FakeImageApi) -> FastAPI:
    """The fake's HTTP app."""
    app = FastAPI(title="fake OpenAI image edit API")

    @app.post("/v1/images/edits")
    async def edits(request: Request) -> Response:
        authorized = fake.api_key is None or request.headers.get("authorization") == f"Bearer {fake.api_key}"
        try:
            parts = parse_multipart(request.headers.get("content-type", ""), await request.body())
        except ValueError:
            parts = None
        fields = {p.name: p.data.decode("utf-8", "replace") for p in parts or () if p.filename is None}
        images = [p for p in parts or () if p.filename is not None and p.name in ("image", "image[]")]
        mask = next((p for p in parts or () if p.filename is not None and p.name == "mask"), None)
        fake.log({"fields": fields, "images": [_described(p) for p in images],
                  "mask": _described(mask) if mask else None, "authorized": authorized})
        if not authorized:  # the key is checked before anything else, as the real API does
            key = (request.headers.get("authorization") or "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {key[:3]}***{key[-4:]}. You can find your API key at "
                               "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        if parts is None:
            return _error(400, f"Invalid Content-Type header ({request.headers.get('content-type')}), expected "
                               "multipart/form-data. (HINT: If you're using curl, you can pass -F 'key=value'.)")
        if (refused := _refusal(fields, images)) is not None:
            return refused
        return await _answer(fake, request, fields, images)

    @app.get("/v1/_fake/images/{image_id}")
    async def image(image_id: str) -> Response:
        if image_id not in fake.images:
            return Response(status_code=404)
        data, media_type = fake.images[image_id]
        if not data:
            return Response("<Error><Code>AuthenticationFailed</Code><AuthenticationErrorDetail>Signed expiry time "
                            "has to be after signed start time</AuthenticationErrorDetail></Error>", 403,
                            media_type="application/xml")
        return Response(data, media_type=media_type)

    fake.add_fake_routes(app, reply_from_json)
    return app


def _described(part: Part) -> dict[str, Any]:
    entry: dict[str, Any] = {"field": part.name, "filename": part.filename, "content_type": part.content_type,
                             "bytes": len(part.data), "width": None, "height": None}
    try:
        with Image.open(io.BytesIO(part.data)) as opened:
            entry["width"], entry["height"] = opened.size
    except (OSError, ValueError):
        pass
    return entry


def _refusal(fields: dict[str, str], images: list[Part]) -> JSONResponse | None:
    """The 400 the real API gives for this form, if any (checked in about the order it checks)."""
    if not fields.get("prompt"):
        return _error(400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    if not images:
        return _error(400, "Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    if "response_format" in fields:
        return _error(400, "Unknown parameter: 'response_format'.", param="response_format", code="unknown_parameter")
    for index, part in enumerate(images):
        param = "image" if part.name == "image" else f"image[{index}]"
        if (mimetype := part.content_type or "application/octet-stream") not in _IMAGE_TYPES:
            return _error(400, f"Invalid file '{param}': unsupported mimetype ('{mimetype}'). Supported file formats "
                               "are 'image/jpeg', 'image/png', and 'image/webp'.", param=param,
                          code="unsupported_file_mimetype")
        if _described(part)["width"] is None:
            return _error(400, f"Invalid image file or mode for image {index + 1}, please check your image file.",
                          param=param, code="invalid_image_file")
    if (size := fields.get("size", "auto")) != "auto" and size not in SIZES:
        return _invalid("size", size, [*SIZES, "auto"])
    if (quality := fields.get("quality", "auto")) not in _QUALITIES:
        return _invalid("quality", quality, _QUALITIES)
    if (output_format := fields.get("output_format", "png")) not in _FORMATS:
        return _invalid("output_format", output_format, _FORMATS)
    if not fields.get("n", "1").isdigit() or not 1 <= int(fields.get("n", "1")) <= 10:
        return _error(400, f"Invalid value: '{fields['n']}'. Must be between 1 and 10.", param="n",
                      code="integer_below_min_value")
    return None


async def _answer(fake: FakeImageApi, request: Request, fields: dict[str, str], images: list[Part]) -> Response:
    reply = fake.next_reply()
    if isinstance(reply, Hang):
        await fake.hang(request, reply.seconds)
        return _error(504, "fake image api: hung as scripted", "server_error")
    if isinstance(reply, ErrorReply):
        headers = {"retry-after": str(reply.retry_after_s)} if reply.retry_after_s is not None else None
        return _error(reply.status, reply.message, reply.type, code=reply.code, headers=headers)
    created = int(time.time())
    if isinstance(reply, Empty):
        return JSONResponse({"created": created, "data": []})
    if reply.delay_s:
        await fake.hang(request, reply.delay_s)
    size, quality = fields.get("size", "auto"), fields.get("quality", "auto")
    output_format = fields.get("output_format", "png")
    picture, size = await asyncio.to_thread(_edited, images[0].data, size, output_format, reply.colour, reply.keep)
    body: dict[str, Any] = {"created": created, "background": "opaque", "output_format": output_format,
                            "quality": "medium" if quality == "auto" else quality, "size": size}
    if reply.url:
        image_id = uuid.uuid4().hex
        fake.images[image_id] = (b"" if reply.expired else picture, _FORMATS[output_format][1])
        body["data"] = [{"url": f"{str(request.base_url).rstrip('/')}/v1/_fake/images/{image_id}"
                                f"?se={created + 3600}&sig=fake-signature"}]
    else:
        body["data"] = [{"b64_json": base64.b64encode(picture).decode()}]
    if reply.usage:
        text = len(fields["prompt"].split())
        image_in = _IMAGE_INPUT_TOKENS * len(images)
        output = _OUTPUT_TOKENS[quality] if size == "1024x1024" else _OUTPUT_TOKENS[quality] * 3 // 2
        body["usage"] = {"input_tokens": text + image_in, "output_tokens": output,
                         "total_tokens": text + image_in + output,
                         "input_tokens_details": {"text_tokens": text, "image_tokens": image_in}}
    return JSONResponse(body)


def _edited(data: bytes, size: str, output_format: str, colour: tuple[int, int, int] | None,
            keep: bool = False) -> tuple[bytes, str]:
    """The input recoloured and resized to `size` (for "auto": the size nearest the input's shape)."""
    with Image.open(io.BytesIO(data)) as opened:
        source = opened.convert("RGB")
    if size == "auto":
        ratio = source.width / source.height
        size = "1536x1024" if ratio > 1.25 else "1024x1536" if ratio < 0.8 else "1024x1024"
    if keep:
        recoloured = source
    elif colour:
        recoloured = ImageOps.colorize(ImageOps.grayscale(source), (0, 0, 0), colour)
    else:
        recoloured = ImageOps.invert(source)
    out = io.BytesIO()
    recoloured.resize(SIZES[size]).save(out, format=_FORMATS[output_format][0])
    return out.getvalue(), size


def main(argv: list[str] | None = None) -> None:
    """Run the fake as a process until SIGINT/SIGTERM."""
    parser = process_arguments("tests.fakes.image_api_server", __doc__, "JSON file of scripted replies")
    parser.add_argument("--record", type=Path, help="append each request (fields, image sizes) to this JSONL file")
    parser.add_argument("--api-key", help="require this bearer key")
    args = parser.parse_args(argv)
    script = read_script(args.script)
    default = script.get("default")
    FakeImageApi([reply_from_json(r) for r in script.get("replies", [])],
                 default=Edit() if default is None else reply_from_json(default), api_key=args.api_key,
                 record=args.record, host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
