"""Which audio a recording is, judged by its content (never its name or declared type), how long it
lasts, and its samples when they are uncompressed.

Durations come from the containers' own headers (WAV sizes, WebM block times, the last Ogg page's
granule position, MP3 frame headers, the MP4 movie header, FLAC's STREAMINFO), so a limit on the
length holds for every format without a codec. Samples come only from WAV and WebM/PCM: the gateway
has no Opus, Vorbis, MP3 or AAC decoder (an OpenAI-compatible server reads those).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway.errors import Unprocessable, UnsupportedMedia
from services.gateway.voice.pcm import Pcm, read_wav
from services.gateway.voice.webm import read_webm

__all__ = ["FORMATS", "AudioFormat", "Probe", "probe_audio", "sniff_audio"]


@dataclass(frozen=True)
class AudioFormat:
    name: str
    media_type: str
    # What a transcription server is told the file is: OpenAI's API goes by the file name's extension.
    extension: str


FORMATS = {f.name: f for f in (
    AudioFormat("wav", "audio/wav", "wav"),
    AudioFormat("webm", "audio/webm", "webm"),
    AudioFormat("ogg", "audio/ogg", "ogg"),
    AudioFormat("mp3", "audio/mpeg", "mp3"),
    AudioFormat("m4a", "audio/mp4", "m4a"),
    AudioFormat("flac", "audio/flac", "flac"),
)}


@dataclass(frozen=True)
class Probe:
    """How long the recording lasts (None: its container does not say), and its samples if uncompressed."""

    seconds: float | None
    codec: str
    pcm: Pcm | None = None


def sniff_audio(data: bytes) -> AudioFormat | None:
    """The audio format the bytes are, by their signature; None for anything else."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return FORMATS["wav"]
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return FORMATS["webm"]
    if data.startswith(b"OggS"):
        return FORMATS["ogg"]
    if data.startswith(b"fLaC"):
        return FORMATS["flac"]
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return FORMATS["m4a"]
    if data.startswith(b"ID3") or _mp3_frame(data, 0) is not None:
        return FORMATS["mp3"]
    return None


def probe_audio(data: bytes, audio: AudioFormat) -> Probe:
    """The duration (and samples) of a recording `sniff_audio` named; 415 or 422 when it is not what it seemed."""
    if audio.name == "wav":
        wav = read_wav(data)
        return Probe(wav.seconds, "pcm" if wav.pcm else "wav", wav.pcm)
    if audio.name == "webm":
        webm = read_webm(data)
        return Probe(webm.seconds, webm.codec, webm.pcm)
    return {"ogg": _ogg, "flac": _flac, "m4a": _mp4, "mp3": _mp3}[audio.name](data)


def _ogg(data: bytes) -> Probe:
    first = _ogg_packet_start(data, 0)
    if first.startswith(b"OpusHead") and len(first) >= 12:
        codec, rate, skip = "opus", 48_000, int.from_bytes(first[10:12], "little")
    elif first.startswith(b"\x01vorbis") and len(first) >= 16:
        codec, rate, skip = "vorbis", int.from_bytes(first[12:16], "little"), 0
    else:
        raise UnsupportedMedia("the Ogg file holds neither Opus nor Vorbis audio", code="unsupported_audio")
    # The last page that ends a packet says how many samples came before its end.
    position = len(data)
    while (position := data.rfind(b"OggS", 0, position)) >= 0:
        granule = int.from_bytes(data[position + 6:position + 14], "little", signed=True)
        if granule >= 0 and rate > 0:
            return Probe(max(0, granule - skip) / rate, codec)
    raise _damaged("Ogg", "no page says how long it is")


def _ogg_packet_start(data: bytes, position: int) -> bytes:
    if len(data) < position + 27:
        raise _damaged("Ogg", "it ends inside its first page")
    segments = data[position + 26]
    start = position + 27 + segments
    return data[start:start + sum(data[position + 27:start])]


def _flac(data: bytes) -> Probe:
    # STREAMINFO is the first metadata block: 20 bits of sample rate, then channels, depth, 36 bits of samples.
    if len(data) < 42 or data[4] & 0x7F != 0:
        raise _damaged("FLAC", "it has no STREAMINFO block")
    bits = int.from_bytes(data[18:26], "big")
    rate, total = bits >> 44, bits & ((1 << 36) - 1)
    if rate == 0:
        raise _damaged("FLAC", "its sample rate is 0")
    return Probe(total / rate if total else None, "flac")


def _mp4(data: bytes) -> Probe:
    movie = _first(_boxes(data, 0, len(data)), b"moov")
    if movie is None:
        raise _damaged("MP4", "it has no movie header (moov)")
    inside = _boxes(data, *movie)
    handlers = []
    for kind, track in inside:
        media = _first(_boxes(data, *track), b"mdia") if kind == b"trak" else None
        handler = _first(_boxes(data, *media), b"hdlr") if media else None
        if handler:
            handlers.append(data[handler[0] + 8:handler[0] + 12])  # after version, flags and pre_defined
    if b"soun" not in handlers:
        raise UnsupportedMedia("the MP4 file has no audio track", code="unsupported_audio")
    header = _first(inside, b"mvhd")
    if header is None:
        raise _damaged("MP4", "it has no movie header (mvhd)")
    at, wide = header[0], data[header[0]] == 1
    scale = int.from_bytes(data[at + (20 if wide else 12):at + (24 if wide else 16)], "big")
    duration = int.from_bytes(data[at + 24:at + 32] if wide else data[at + 16:at + 20], "big")
    # A fragmented MP4 (what Safari's recorder writes) leaves the movie's duration 0: it is not known here.
    return Probe(duration / scale if scale and duration else None, "aac")


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, tuple[int, int]]]:
    """The boxes between `start` and `end`, in order: (type, (body start, body end))."""
    found = []
    position = start
    while position + 8 <= end:
        size, kind = int.from_bytes(data[position:position + 4], "big"), data[position + 4:position + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[position + 8:position + 16], "big"), 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            break  # a box cut off by the end of the recording
        found.append((kind, (position + header, position + size)))
        position += size
    return found


def _first(boxes: list[tuple[bytes, tuple[int, int]]], kind: bytes) -> tuple[int, int] | None:
    return next((span for k, span in boxes if k == kind), None)


_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MP3_KBPS = {3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}


def _mp3_frame(data: bytes, position: int) -> tuple[int, int, int] | None:
    """(frame length, samples, sample rate) of the MPEG layer III frame at `position`, if one is there."""
    if position + 4 > len(data) or data[position] != 0xFF or data[position + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (data[position + 1] >> 3) & 3, (data[position + 1] >> 1) & 3
    rate_index, kbps_index = (data[position + 2] >> 2) & 3, data[position + 2] >> 4
    if version == 1 or layer != 1 or rate_index == 3 or kbps_index in (0, 15):
        return None
    rate = _MP3_RATES[version][rate_index]
    kbps = _MP3_KBPS[3 if version == 3 else 2][kbps_index]
    padding = (data[position + 2] >> 1) & 1
    samples = 1152 if version == 3 else 576
    return samples // 8 * kbps * 1000 // rate + padding, samples, rate


def _mp3(data: bytes) -> Probe:
    position = 0
    if data.startswith(b"ID3") and len(data) >= 10:
        size = 0
        for byte in data[6:10]:  # a "syncsafe" integer: 7 bits a byte
            size = (size << 7) | (byte & 0x7F)
        position = 10 + size + (10 if data[5] & 0x10 else 0)
    seconds, frames = 0.0, 0
    while (frame := _mp3_frame(data, position)) is not None:
        length, samples, rate = frame
        seconds += samples / rate
        frames += 1
        position += length
    if frames == 0:
        raise UnsupportedMedia("the file has an ID3 tag but no MP3 audio after it", code="unsupported_audio")
    return Probe(seconds, "mp3")


def _damaged(kind: str, why: str) -> Unprocessable:
    return Unprocessable(f"the {kind} recording cannot be read: {why}. Record it again", code="damaged_audio")
