"""Photo uploads: read a multipart body within a size limit, check the image by its content, strip
its metadata (EXIF GPS, camera serials, ...), and ask the facecheck service whether it holds a
usable face.

The multipart reader is small on purpose (no python-multipart dependency): it takes a body already
bounded in size, and a handful of parts with short headers.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass

import nats
from PIL import Image, ImageOps, JpegImagePlugin
from starlette.requests import Request

from contracts.subjects import rpc_subject
from services.gateway.errors import (
    BadRequest,
    PayloadTooLarge,
    Unavailable,
    Unprocessable,
    UnsupportedMedia,
    UpstreamTimeout,
)
from services.gateway.images import sniff_media_type
from services.gateway.photo_metadata import carries_metadata, is_lossless_webp
from services.gateway.text_guard import unstorable

__all__ = ["FaceVerdict", "Part", "PhotoCheck", "check_face", "check_photo", "clean_photo", "parse_multipart",
           "read_body"]

_MAX_PARTS = 32
_MAX_HEADER_BYTES = 4096
# The multipart framing around the photo: boundaries, part headers and a few short text fields.
_FORM_OVERHEAD = 256 * 1024
_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,200})"|([^\s;]{1,200}))', re.IGNORECASE)
_PARAM = re.compile(r'\b(name|filename)="((?:[^"\\]|\\.)*)"', re.IGNORECASE)
# A file that claims this many pixels per byte is a decompression bomb, not a big photo.
_BOMB_PIXELS_PER_BYTE = 100


@dataclass(frozen=True)
class Part:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    def text(self) -> str:
        try:
            text = self.data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise Unprocessable(f"form field {self.name!r} is not UTF-8 text", code="invalid_field") from None
        if (why := unstorable(text)) is not None:
            raise Unprocessable(f"form field {self.name!r} {why}", code="invalid_request")
        return text


@dataclass(frozen=True)
class PhotoCheck:
    media_type: str
    width: int
    height: int


@dataclass(frozen=True)
class FaceVerdict:
    faces_found: int
    reason: str | None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to be over `max_bytes` (+ form overhead)."""
    limit = max_bytes + _FORM_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the upload is at least {size} bytes; a photo may have at most {max_bytes} bytes. "
                           "Send a smaller JPEG, PNG or WebP.", code="file_too_large")


def parse_multipart(content_type: str, body: bytes) -> dict[str, Part]:
    """The parts of a multipart/form-data body by field name."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMedia("send the upload as multipart/form-data (a form with an `image` file field)",
                               code="multipart_required")
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise BadRequest("the multipart Content-Type has no boundary", code="bad_multipart")
    # A delimiter is CRLF "--" boundary, followed by CRLF (another part) or "--" (the end); the first one
    # may open the body without its CRLF. Anything else that merely starts with it is content.
    marker = b"\r\n--" + (found.group(1) or found.group(2)).encode()
    pieces: list[bytes] = []
    for piece in (b"\r\n" + body).split(marker)[1:]:
        if pieces and not piece.startswith((b"\r\n", b"--")):
            pieces[-1] += marker + piece
        else:
            pieces.append(piece)
    if not pieces or not pieces[-1].startswith(b"--"):
        raise BadRequest("the multipart body is incomplete (no closing boundary)", code="bad_multipart")
    if len(pieces) - 1 > _MAX_PARTS:
        raise BadRequest(f"the form has more than {_MAX_PARTS} fields", code="bad_multipart")
    parts: dict[str, Part] = {}
    for piece in pieces[:-1]:
        part = _part(piece)
        if part.name in parts:
            raise BadRequest(f"form field {part.name!r} is given twice", code="bad_multipart")
        parts[part.name] = part
    return parts


def _part(piece: bytes) -> Part:
    head, sep, data = piece[2:].partition(b"\r\n\r\n")
    if not sep or len(head) > _MAX_HEADER_BYTES:
        raise BadRequest("a multipart part has no (or oversized) headers", code="bad_multipart")
    name = filename = content_type = None
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "content-disposition":
            params = {k.lower(): v.replace('\\"', '"') for k, v in _PARAM.findall(value)}
            name, filename = params.get("name"), params.get("filename")
        elif key == "content-type":
            content_type = value.strip()
    if not name:
        raise BadRequest("a multipart part has no field name", code="bad_multipart")
    return Part(name, data, filename, content_type)


def check_photo(data: bytes, *, max_bytes: int, max_pixels: int, min_side: int) -> PhotoCheck:
    """What the bytes are, judged by their content; refuses anything but a sane JPEG, PNG or WebP."""
    if not data:
        raise Unprocessable("the `image` field is empty: choose a photo file", code="empty_file")
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    media_type = sniff_media_type(data)
    if media_type is None:
        raise UnsupportedMedia("the file is not a JPEG, PNG or WebP image (judged by its content, whatever its "
                               "name or declared type); export the photo as one of those", code="unsupported_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "WEBP"]) as image:
                width, height = image.size
                _check_pixels(width, height, len(data), max_pixels)
                if min(width, height) < min_side:
                    raise Unprocessable(f"the photo is {width}x{height}; a face photo needs at least "
                                        f"{min_side} pixels on each side", code="image_too_small")
                # Decode it all: a truncated or corrupt file is refused here, not by a later service.
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge("refused as a decompression bomb: the image claims far more pixels than a photo has",
                              code="decompression_bomb") from None
    except (PayloadTooLarge, Unprocessable):
        raise
    except Exception as exc:  # Pillow raises many types for damaged files (OSError, SyntaxError, ...)
        raise Unprocessable(f"the image is damaged or truncated ({type(exc).__name__}: {exc}); "
                            "export it again", code="damaged_image") from None
    return PhotoCheck(media_type, width, height)


def _check_pixels(width: int, height: int, size: int, max_pixels: int) -> None:
    pixels = width * height
    if pixels <= max_pixels:
        return
    if pixels > size * _BOMB_PIXELS_PER_BYTE:
        raise PayloadTooLarge(f"refused as a decompression bomb: a {size}-byte file that decodes to {width}x{height} "
                              "pixels", code="decompression_bomb")
    raise PayloadTooLarge(f"the photo is {width}x{height} = {pixels} pixels; the limit is {max_pixels}. "
                          "Scale it down and upload again.", code="too_many_pixels")


def clean_photo(data: bytes) -> bytes:
    """The photo upright and without metadata; the same bytes when it carries none.

    Call it on bytes `check_photo` accepted. A photo with any metadata (EXIF and its orientation,
    XMP, IPTC, ICC, comments, text chunks, trailers) is turned as its EXIF orientation says and
    re-encoded in its own format with the pixels alone; one without is returned as it is, so its
    content address does not change.
    """
    media_type = sniff_media_type(data)
    if media_type is None:
        raise ValueError("clean_photo takes a JPEG, PNG or WebP that check_photo accepted")
    if not carries_metadata(data, media_type):
        return data
    with Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "WEBP"]) as source:
        upright = ImageOps.exif_transpose(source)
        options = _encoder_options(source, media_type, data)
    # Only what the pixels need survives: encoders fall back to `info` for an ICC profile or a comment.
    upright.info = {k: v for k, v in upright.info.items() if k == "transparency"}
    out = io.BytesIO()
    upright.save(out, **options)
    return out.getvalue()


def _encoder_options(source: Image.Image, media_type: str, data: bytes) -> dict[str, object]:
    if media_type == "image/png":
        return {"format": "PNG", "optimize": True}
    if media_type == "image/webp":
        if is_lossless_webp(data):
            return {"format": "WEBP", "lossless": True}
        return {"format": "WEBP", "quality": 95}
    options: dict[str, object] = {"format": "JPEG", "quality": 95}
    sampling = JpegImagePlugin.get_sampling(source)
    if sampling != -1:  # keep the source's chroma subsampling (4:4:4 stays sharp)
        options["subsampling"] = sampling
    return options


async def check_face(nc: nats.NATS, sha256: str, *, timeout_s: float, several_allowed: bool = False) -> FaceVerdict:
    """Ask the facecheck service whether the stored image holds one usable face; refuse it if not.
    A photo of several faces is refused too, unless the caller said the largest is the character's."""
    try:
        reply = await nc.request(rpc_subject("face.check_reference"), json.dumps({"sha256": sha256}).encode(),
                                 timeout=timeout_s)
    except nats.errors.NoRespondersError:
        raise Unavailable("the face check service is not running, so the photo cannot be checked; "
                          "try again in a moment", code="facecheck_unavailable") from None
    except nats.errors.TimeoutError:
        raise UpstreamTimeout(f"the face check did not answer within {timeout_s:g}s; try again",
                              code="facecheck_timeout") from None
    try:
        answer = json.loads(reply.data)
        ok, faces = bool(answer["ok"]), int(answer.get("faces_found") or 0)
        reason = answer.get("reason")
    except (ValueError, KeyError, TypeError):
        raise Unavailable("the face check service gave an answer the gateway cannot read; try again",
                          code="facecheck_unavailable") from None
    if not ok:
        why = reason or ("no face was found" if faces == 0 else f"{faces} faces were found")
        raise Unprocessable(f"the photo cannot be a character's reference: {why}. Upload a clear photo of one "
                            "face, looking at the camera", code="no_face")
    if faces > 1 and not several_allowed:
        raise Unprocessable(f"the photo shows {faces} faces, and a reference is one person. Crop it to the "
                            "character's face, or send the form field `face=largest` if the largest face is the "
                            "character's", code="several_faces")
    return FaceVerdict(faces, reason)
