"""Whether a JPEG, PNG or WebP file carries anything beyond its pixels, judged by its container.

Each format's blocks are walked and compared with a list of the blocks that only describe pixels;
anything else (EXIF, XMP, IPTC, ICC profiles, comments, text chunks, thumbnails, vendor segments,
bytes after the end of the image) counts as metadata. A file that cannot be walked counts as
carrying metadata too: the caller then re-encodes it, which is the safe side for privacy.
"""

from __future__ import annotations

import struct

__all__ = ["carries_metadata", "is_lossless_webp"]

# Markers that stand alone (no length field): TEM and the restart markers RST0..RST7.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_SOS, _JPEG_EOI, _JPEG_APP0, _JPEG_APP14 = 0xDA, 0xD9, 0xE0, 0xEE
_JPEG_COM = 0xFE
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PIXEL_CHUNKS = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT",
                               b"pHYs", b"bKGD"})
_WEBP_PIXEL_CHUNKS = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"})


def carries_metadata(data: bytes, media_type: str) -> bool:
    """True when the file holds any block that does not describe its pixels (or cannot be walked)."""
    walkers = {"image/jpeg": _jpeg_carries, "image/png": _png_carries, "image/webp": _webp_carries}
    try:
        return walkers[media_type](data)
    except (IndexError, ValueError, struct.error):  # ValueError: no marker after a scan
        return True


def is_lossless_webp(data: bytes) -> bool:
    """True when a WebP file's image is VP8L (lossless), so a re-encode must stay lossless."""
    return b"VP8L" in _webp_chunks(data)[0]


def _jpeg_carries(data: bytes) -> bool:
    i = 2  # after SOI
    while True:
        if data[i] != 0xFF:
            return True
        while data[i] == 0xFF:  # fill bytes may precede a marker
            i += 1
        marker = data[i]
        i += 1
        if marker == _JPEG_EOI:
            return i != len(data)  # anything after the image (a motion-photo video, a vendor trailer)
        if marker in _JPEG_STANDALONE:
            continue
        (length,) = struct.unpack_from(">H", data, i)
        payload = data[i + 2:i + length]
        if (_JPEG_APP0 <= marker <= 0xEF or marker == _JPEG_COM) and not _jpeg_pixel_segment(marker, payload):
            return True
        i += length
        if marker == _JPEG_SOS:
            i = _jpeg_after_scan(data, i)


def _jpeg_pixel_segment(marker: int, payload: bytes) -> bool:
    # A JFIF header without its optional thumbnail, and Adobe's colour-transform flag, describe pixels.
    if marker == _JPEG_APP0:
        return payload.startswith(b"JFIF\x00") and payload[12:14] == b"\x00\x00"
    return marker == _JPEG_APP14 and payload.startswith(b"Adobe")


def _jpeg_after_scan(data: bytes, i: int) -> int:
    """The index of the marker that ends the entropy-coded data starting at `i`."""
    while True:
        i = data.index(b"\xff", i)
        following = data[i + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:  # a stuffed 0xFF byte, or a restart marker
            i += 2
        elif following == 0xFF:
            i += 1
        else:
            return i


def _png_carries(data: bytes) -> bool:
    i = len(_PNG_SIGNATURE)
    while True:
        length, kind = struct.unpack_from(">I4s", data, i)
        if kind not in _PNG_PIXEL_CHUNKS:
            return True
        i += 12 + length
        if kind == b"IEND":
            return i != len(data)


def _webp_carries(data: bytes) -> bool:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    fourccs, end = _webp_chunks(data)
    # Bytes past the RIFF size, or chunk sizes that do not add up to it, hide something.
    return riff_size + 8 != len(data) or end != len(data) or not set(fourccs) <= _WEBP_PIXEL_CHUNKS


def _webp_chunks(data: bytes) -> tuple[list[bytes], int]:
    """The fourcc of each top-level chunk of a RIFF/WEBP file, and the offset where the last one ends."""
    fourccs, i = [], 12
    while i + 8 <= len(data):
        fourcc, size = struct.unpack_from("<4sI", data, i)
        fourccs.append(fourcc)
        i += 8 + size + (size & 1)
    return fourccs, i
