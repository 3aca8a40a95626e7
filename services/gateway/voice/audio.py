"""A recording as the gateway takes it: within the size and duration limits, audio by its content, and
not silent. Everything here runs before any transcriber is asked (and paid)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.gateway.errors import PayloadTooLarge, Unprocessable, UnsupportedMedia
from services.gateway.voice.decode import decode_to_pcm
from services.gateway.voice.formats import AudioFormat, probe_audio, sniff_audio
from services.gateway.voice.pcm import Pcm, loudest_dbfs

__all__ = ["Limits", "Recording", "no_speech", "read_recording", "too_large"]

_KINDS = "WebM, Ogg, WAV, MP3, M4A or FLAC"


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_seconds: float
    # The loudest 20 ms of a recording with speech in it reach at least this level (dBFS).
    min_level_dbfs: float


@dataclass(frozen=True)
class Recording:
    """An accepted recording: its bytes, format, length and hash, and its samples (decoded when compressed)."""

    data: bytes
    format: AudioFormat
    codec: str
    seconds: float
    sha256: str
    pcm: Pcm


def read_recording(data: bytes, limits: Limits) -> Recording:
    """The recording, or the 413/415/422 that says why it is refused."""
    if not data:
        raise no_speech("the recording is empty")
    if len(data) > limits.max_bytes:
        raise too_large(len(data), limits.max_bytes)
    audio = sniff_audio(data)
    if audio is None:
        raise UnsupportedMedia(f"the file is not audio (judged by its content, whatever its name or declared type); "
                               f"send a {_KINDS} recording", code="unsupported_audio")
    probe = probe_audio(data, audio)
    if probe.seconds is None:
        raise Unprocessable(f"the {audio.name.upper()} file does not say how long it is (a fragmented or streamed "
                            f"file), so its length cannot be checked; send it as WAV, WebM or Ogg",
                            code="audio_length_unknown")
    if probe.seconds > limits.max_seconds:
        raise Unprocessable(f"the recording lasts {probe.seconds:.1f}s; a spoken message may last at most "
                            f"{limits.max_seconds:g}s. Say it in shorter parts", code="audio_too_long")
    # Compressed audio (Opus, MP3, AAC, FLAC) is decoded here: the silence check and the offline recognizer
    # read samples, and a paid transcriber is not asked about silence.
    pcm = probe.pcm if probe.pcm is not None else decode_to_pcm(data, max_seconds=limits.max_seconds)
    if not pcm.samples:
        raise no_speech("the recording holds no sound")
    level = loudest_dbfs(pcm)
    if level < limits.min_level_dbfs:
        shown = "digital silence" if level == float("-inf") else f"{level:.0f} dBFS at its loudest"
        raise no_speech(f"the recording is silent ({shown}; speech reaches {limits.min_level_dbfs:g})")
    return Recording(data, audio, probe.codec, probe.seconds, hashlib.sha256(data).hexdigest(), pcm)


def no_speech(why: str) -> Unprocessable:
    return Unprocessable(f"{why}: no speech was heard. Check the microphone, hold the key while you speak, and "
                         "speak up", code="no_speech")


def too_large(size: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the recording is at least {size} bytes; a spoken message may have at most {max_bytes} "
                           f"bytes. Record a shorter message", code="audio_too_large")
