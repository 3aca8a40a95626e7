"""Compressed recordings (Opus in WebM or Ogg, MP3, AAC in M4A, FLAC) decoded to 16 kHz mono PCM with PyAV.

Browsers record Opus and phones AAC; the offline recognizer reads PCM only, and the silence check needs
samples too. PyAV carries FFmpeg in its wheel, so nothing is installed on the system. Decoding happens after
the size and duration checks, so a recording is never decoded past its limits.
"""

from __future__ import annotations

import io

import av
from av.error import FFmpegError

from services.gateway.errors import Unprocessable
from services.gateway.voice.pcm import Pcm

__all__ = ["RATE", "decode_to_pcm"]

# What PocketSphinx's en-us model was trained on; Whisper-style servers take the original file anyway.
RATE = 16_000


def decode_to_pcm(data: bytes, *, max_seconds: float) -> Pcm:
    """The recording as 16-bit mono PCM at `RATE`, at most `max_seconds` of it; 422 when it cannot be decoded."""
    limit = int(max_seconds * RATE) * 2
    out = bytearray()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise _damaged("it holds no audio track")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    out += _samples(converted)
                if len(out) >= limit:
                    break
            for converted in resampler.resample(None):
                out += _samples(converted)
    except (FFmpegError, StopIteration, ValueError) as exc:
        raise _damaged(f"{type(exc).__name__}: {exc}") from None
    return Pcm(bytes(out[:limit]), RATE)


def _samples(frame: av.AudioFrame) -> bytes:
    # Packed mono s16: the plane may be padded past the last sample.
    return bytes(frame.planes[0])[: frame.samples * 2]


def _damaged(why: str) -> Unprocessable:
    return Unprocessable(f"the recording could not be decoded ({why}); record it again, or send WAV",
                         code="damaged_audio")
