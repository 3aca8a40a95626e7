"""Uncompressed audio: WAV files read without a decoder library, samples turned into the 16-bit mono
PCM a recognizer takes, and how loud the loudest moment of a recording is.

Pure Python on purpose: the gateway's dependencies hold no audio decoder, and uncompressed samples need
none. Byte slicing does the per-sample work at C speed wherever the format allows it.
"""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass
from operator import mul

from services.gateway.errors import Unprocessable

__all__ = ["Pcm", "WavInfo", "loudest_dbfs", "read_wav", "to_mono16"]

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# 8-bit PCM is unsigned: flipping the top bit makes it the high byte of a signed 16-bit sample.
_UNSIGNED_TO_SIGNED = bytes((b ^ 0x80) for b in range(256))
_LEVEL_WINDOW_S = 0.02


@dataclass(frozen=True)
class Pcm:
    """Signed 16-bit little-endian mono samples at `rate` samples per second."""

    samples: bytes
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / 2 / self.rate


@dataclass(frozen=True)
class WavInfo:
    """What a WAV file holds: its length, and its samples when they are in an encoding read here."""

    seconds: float
    pcm: Pcm | None


def read_wav(data: bytes) -> WavInfo:
    """The RIFF/WAVE file's duration, and its first channel as `Pcm` when it is integer or float PCM."""
    fmt: bytes | None = None
    body: bytes | None = None
    position = 12
    while position + 8 <= len(data):
        chunk_id, size = data[position:position + 4], int.from_bytes(data[position + 4:position + 8], "little")
        start = position + 8
        if chunk_id == b"fmt ":
            fmt = data[start:start + size]
        elif chunk_id == b"data":
            # A recorder that was stopped mid-write leaves a size that overshoots (or 0xFFFFFFFF): take what is there.
            body = data[start:start + size]
            break
        position = start + size + (size & 1)
    if fmt is None or len(fmt) < 16 or body is None:
        raise _damaged("it has no `fmt ` or `data` chunk")
    tag = int.from_bytes(fmt[0:2], "little")
    channels = int.from_bytes(fmt[2:4], "little")
    rate = int.from_bytes(fmt[4:8], "little")
    byte_rate = int.from_bytes(fmt[8:12], "little")
    align = int.from_bytes(fmt[12:14], "little")
    bits = int.from_bytes(fmt[14:16], "little")
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], "little")  # the first two bytes of the sub-format GUID
    if not 1 <= channels <= 32 or not 1000 <= rate <= 768_000 or byte_rate <= 0 or align <= 0:
        raise _damaged(f"its header says {channels} channels at {rate} Hz")
    body = body[:len(body) - len(body) % align]
    seconds = len(body) / byte_rate
    readable = (tag == _PCM and bits in (8, 16, 24, 32)) or (tag == _FLOAT and bits in (32, 64))
    if not readable or align != channels * bits // 8:
        return WavInfo(seconds, None)  # e.g. ADPCM or mu-law: audio, but not samples this module reads
    return WavInfo(seconds, Pcm(to_mono16(body, channels, bits, floating=tag == _FLOAT), rate))


def to_mono16(raw: bytes, channels: int, bits: int, *, floating: bool = False) -> bytes:
    """The first channel of interleaved little-endian samples as signed 16-bit samples.

    One channel, not a mix: a voice recording's channels carry the same voice, and mixing would cost a
    Python operation per sample where picking costs a slice."""
    width = bits // 8
    stride = width * channels
    frames = len(raw) // stride
    if floating:
        first = bytearray(frames * width)
        for k in range(width):
            first[k::width] = raw[k:frames * stride:stride]
        values = array("f" if width == 4 else "d", bytes(first))
        if sys.byteorder == "big":
            values.byteswap()
        out = array("h", (int(max(-1.0, min(1.0, v)) * 32767.0) for v in values))
        if sys.byteorder == "big":
            out.byteswap()
        return out.tobytes()
    samples = bytearray(frames * 2)
    if width == 1:
        samples[1::2] = raw[0:frames * stride:stride].translate(_UNSIGNED_TO_SIGNED)
    else:
        # The two most significant bytes of each sample are its 16-bit value.
        samples[0::2] = raw[width - 2:frames * stride:stride]
        samples[1::2] = raw[width - 1:frames * stride:stride]
    return bytes(samples)


def loudest_dbfs(pcm: Pcm) -> float:
    """The level of the loudest 20 ms of the recording, in dB below full scale (-inf for digital silence).

    Measured as the window's variance, not its mean square, so a microphone's DC offset is not heard as sound."""
    samples = array("h", pcm.samples)
    if sys.byteorder == "big":
        samples.byteswap()
    window = max(1, int(pcm.rate * _LEVEL_WINDOW_S))
    loudest = 0.0
    for start in range(0, len(samples), window):
        chunk = samples[start:start + window]
        mean = sum(chunk) / len(chunk)
        loudest = max(loudest, sum(map(mul, chunk, chunk)) / len(chunk) - mean * mean)
    return 10 * math.log10(loudest / 32768.0**2) if loudest > 0 else -math.inf


def _damaged(why: str) -> Unprocessable:
    return Unprocessable(f"the WAV recording cannot be read: {why}. Record it again", code="damaged_audio")
