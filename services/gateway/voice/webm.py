"""WebM (Matroska) audio without a demuxer library: how long the recording is, and its samples when the
track is uncompressed PCM (`MediaRecorder` with `audio/webm;codecs=pcm`).

Elements are read in one linear pass: a master element (segment, cluster, tracks, ...) is entered, any
other is read or skipped by its size. That is also how the unknown sizes a live recorder writes for its
segment and clusters are handled: they are never needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from services.gateway.errors import Unprocessable, UnsupportedMedia
from services.gateway.voice.pcm import Pcm, to_mono16

__all__ = ["WebmInfo", "read_webm"]

_EBML, _SEGMENT, _CLUSTER, _TRACKS, _TRACK, _AUDIO, _INFO, _BLOCK_GROUP = (
    0x1A45DFA3, 0x18538067, 0x1F43B675, 0x1654AE6B, 0xAE, 0xE1, 0x1549A966, 0xA0)
_MASTERS = frozenset({_EBML, _SEGMENT, _CLUSTER, _TRACKS, _TRACK, _AUDIO, _INFO, _BLOCK_GROUP})
_DOC_TYPE, _TIMECODE_SCALE, _DURATION, _CLUSTER_TIME = 0x4282, 0x2AD7B1, 0x4489, 0xE7
_TRACK_NUMBER, _TRACK_TYPE, _CODEC, _RATE, _CHANNELS, _BIT_DEPTH = 0xD7, 0x83, 0x86, 0xB5, 0x9F, 0x6264
_SIMPLE_BLOCK, _BLOCK = 0xA3, 0xA1
_AUDIO_TRACK = 2
_PCM_CODECS = {"A_PCM/INT/LIT": False, "A_PCM/FLOAT/IEEE": True}


@dataclass
class _Track:
    number: int = 0
    kind: int = 0
    codec: str = ""
    rate: float = 8000.0
    channels: int = 1
    bits: int = 0


@dataclass
class _Walk:
    doc_type: str = ""
    scale_ns: int = 1_000_000
    duration: float | None = None
    cluster_time: int = 0
    last_time: int = 0
    tracks: list[_Track] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    laced: bool = False


@dataclass(frozen=True)
class WebmInfo:
    seconds: float
    codec: str
    pcm: Pcm | None


def read_webm(data: bytes) -> WebmInfo:
    """The recording's length and its audio codec; its first channel as `Pcm` when the track is PCM."""
    walk = _Walk()
    audio: _Track | None = None
    position = 0
    while position < len(data):
        head = _element(data, position)
        if head is None:
            break  # a recording cut off mid-element: what came before is still good
        element, start, size = head
        if element in _MASTERS:
            if element == _TRACK:
                walk.tracks.append(_Track())
            position = start
            continue
        if size is None:
            raise _damaged("an element of unknown size that is not a container")
        body = data[start:start + size]
        if element in (_SIMPLE_BLOCK, _BLOCK):
            audio = audio or _audio_track(walk)
            _block(walk, body, audio)
        else:
            _leaf(walk, element, body)
        position = start + size
    if walk.doc_type not in ("webm", "matroska"):
        raise UnsupportedMedia(f"the file is EBML of type {walk.doc_type or 'unknown'!r}, not a WebM recording",
                               code="unsupported_audio")
    audio = audio or _audio_track(walk)
    floating = _PCM_CODECS.get(audio.codec)
    pcm = None
    if floating is not None and not walk.laced and audio.bits in ((32, 64) if floating else (8, 16, 24, 32)):
        raw = b"".join(walk.frames)
        pcm = Pcm(to_mono16(raw, audio.channels, audio.bits, floating=floating), round(audio.rate))
    if walk.duration is not None:
        seconds = walk.duration * walk.scale_ns / 1e9
    elif pcm is not None:
        seconds = pcm.seconds
    else:
        # The last block's start: short of the end by one frame (20 ms of Opus), which a limit can bear.
        seconds = walk.last_time * walk.scale_ns / 1e9
    return WebmInfo(seconds, audio.codec, pcm)


def _element(data: bytes, position: int) -> tuple[int, int, int | None] | None:
    """(id, where its body starts, its size or None when unknown) of the element at `position`."""
    found = _vint(data, position, keep_marker=True)
    if found is None:
        return None
    element, position = found
    found = _vint(data, position, keep_marker=False)
    if found is None:
        return None
    size, start = found
    length = start - position
    unknown = size == (1 << (7 * length)) - 1
    return element, start, None if unknown else size


def _vint(data: bytes, position: int, *, keep_marker: bool) -> tuple[int, int] | None:
    if position >= len(data) or data[position] == 0:
        return None
    first = data[position]
    length = 9 - first.bit_length()
    if position + length > len(data):
        return None
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    for byte in data[position + 1:position + length]:
        value = (value << 8) | byte
    return value, position + length


def _leaf(walk: _Walk, element: int, body: bytes) -> None:
    track = walk.tracks[-1] if walk.tracks else None
    if element == _DOC_TYPE:
        walk.doc_type = body.decode("ascii", "replace").rstrip("\x00")
    elif element == _TIMECODE_SCALE:
        walk.scale_ns = int.from_bytes(body, "big") or 1_000_000
    elif element == _DURATION and len(body) in (4, 8):
        walk.duration = struct.unpack(">f" if len(body) == 4 else ">d", body)[0]
    elif element == _CLUSTER_TIME:
        walk.cluster_time = int.from_bytes(body, "big")
    elif track is not None and element in (_TRACK_NUMBER, _TRACK_TYPE, _CHANNELS, _BIT_DEPTH):
        name = {_TRACK_NUMBER: "number", _TRACK_TYPE: "kind", _CHANNELS: "channels", _BIT_DEPTH: "bits"}[element]
        setattr(track, name, int.from_bytes(body, "big"))
    elif track is not None and element == _CODEC:
        track.codec = body.decode("ascii", "replace").rstrip("\x00")
    elif track is not None and element == _RATE and len(body) in (4, 8):
        track.rate = struct.unpack(">f" if len(body) == 4 else ">d", body)[0]


def _audio_track(walk: _Walk) -> _Track:
    track = next((t for t in walk.tracks if t.kind == _AUDIO_TRACK), None)
    if track is None:
        raise UnsupportedMedia("the WebM file has no audio track", code="unsupported_audio")
    if not 1 <= track.channels <= 32 or not 1000 <= track.rate <= 768_000:
        raise _damaged(f"its audio track says {track.channels} channels at {track.rate:g} Hz")
    return track


def _block(walk: _Walk, body: bytes, audio: _Track) -> None:
    found = _vint(body, 0, keep_marker=False)
    if found is None or found[1] + 3 > len(body):
        raise _damaged("a block is shorter than its header")
    number, at = found
    if number != audio.number:
        return
    relative = int.from_bytes(body[at:at + 2], "big", signed=True)
    walk.last_time = max(walk.last_time, walk.cluster_time + relative)
    if body[at + 2] & 0x06:
        walk.laced = True  # several frames in one block; PCM recorders never do this
    if audio.codec in _PCM_CODECS:
        walk.frames.append(body[at + 3:])


def _damaged(why: str) -> Unprocessable:
    return Unprocessable(f"the WebM recording cannot be read: {why}. Record it again", code="damaged_audio")
