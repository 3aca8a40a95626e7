"""Fake audio files, built byte by byte for the voice tests: each container's real layout, with samples or
frames the tests choose (a WAV in any sample format, WebM as MediaRecorder writes it, Ogg pages, MP3
frames, MP4 boxes, FLAC's STREAMINFO). Test code: the gateway's readers must not read what they wrote."""

from __future__ import annotations

import math
import struct

__all__ = ["flac", "mp3", "mp4", "ogg", "sine", "wav", "webm"]


def sine(seconds: float, rate: int, *, amplitude: float = 0.5, hz: float = 440.0) -> list[float]:
    return [amplitude * math.sin(2 * math.pi * hz * n / rate) for n in range(int(seconds * rate))]


def _samples(values: list[float], bits: int, floating: bool) -> bytes:
    if floating:
        return struct.pack(f"<{len(values)}{'f' if bits == 32 else 'd'}", *values)
    if bits == 8:
        return bytes(int(v * 127) + 128 for v in values)
    scale = 2 ** (bits - 1) - 1
    return b"".join(int(v * scale).to_bytes(bits // 8, "little", signed=True) for v in values)


def wav(channels: list[list[float]], rate: int, *, bits: int = 16, floating: bool = False, tag: int | None = None,
        data_size: int | None = None) -> bytes:
    """A RIFF/WAVE file; `data_size` overrides the data chunk's size field (a streamed or cut-off file)."""
    frames = b"".join(b"".join(_samples([ch[i]], bits, floating) for ch in channels) for i in range(len(channels[0])))
    align = len(channels) * bits // 8
    tag = tag if tag is not None else (3 if floating else 1)
    fmt = struct.pack("<HHIIHH", tag, len(channels), rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(frames) if data_size is None else data_size) + frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _element(element_id: int, body: bytes, *, unknown: bool = False) -> bytes:
    head = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    size = b"\x01\xff\xff\xff\xff\xff\xff\xff" if unknown else (0x10000000 | len(body)).to_bytes(4, "big")
    return head + size + body


def webm(codec: str, blocks: list[bytes], *, rate: float = 48000.0, channels: int = 1, bits: int = 32,
         block_ms: int = 20, track_type: int = 2, duration_ms: float | None = None) -> bytes:
    """A WebM recording as MediaRecorder writes it live: a segment and clusters of unknown size, a block each
    `block_ms` (milliseconds, the timecode scale's unit here)."""
    header = _element(0x1A45DFA3, _element(0x4282, b"webm"))
    info = _element(0x2AD7B1, (1_000_000).to_bytes(3, "big"))
    if duration_ms is not None:
        info += _element(0x4489, struct.pack(">d", duration_ms))
    audio = (_element(0xB5, struct.pack(">d", rate)) + _element(0x9F, bytes([channels]))
             + _element(0x6264, bytes([bits])))
    track = (_element(0xD7, b"\x01") + _element(0x83, bytes([track_type])) + _element(0x86, codec.encode())
             + _element(0xE1, audio))
    cluster = _element(0xE7, b"\x00") + b"".join(
        _element(0xA3, b"\x81" + (i * block_ms).to_bytes(2, "big", signed=True) + b"\x80" + block)
        for i, block in enumerate(blocks))
    segment = (_element(0x1549A966, info) + _element(0x1654AE6B, _element(0xAE, track))
               + _element(0x1F43B675, cluster, unknown=True))
    return header + _element(0x18538067, segment, unknown=True)


def _page(granule: int, packet: bytes, sequence: int) -> bytes:
    lacing = bytes([255] * (len(packet) // 255) + [len(packet) % 255])
    return (b"OggS" + bytes([0, 2 if sequence == 0 else 0]) + struct.pack("<qII", granule, 1, sequence) + b"\0" * 4
            + bytes([len(lacing)]) + lacing + packet)


def ogg(first_packet: bytes, last_granule: int, pages: int = 3) -> bytes:
    """Ogg pages: the codec's header packet, then audio pages, the last ending at `last_granule`."""
    body = _page(0, first_packet, 0)
    for n in range(1, pages):
        body += _page(last_granule * n // (pages - 1), b"\x00" * 40, n)
    return body


def mp3(frames: int, *, id3: bool = False) -> bytes:
    """MPEG-1 layer III frames at 128 kbit/s and 44.1 kHz (417 bytes each), after an ID3v2 tag if asked."""
    frame = b"\xff\xfb\x90\x00" + b"\x00" * 413
    tag = b"ID3\x04\x00\x00" + bytes([0, 0, 0, 20]) + b"\x00" * 20 if id3 else b""
    return tag + frame * frames


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def mp4(*, timescale: int, duration: int, handler: bytes = b"soun") -> bytes:
    """ftyp, then a movie header and one track of the given handler type (soun, vide)."""
    mvhd = _box(b"mvhd", b"\x00\x00\x00\x00" + struct.pack(">IIII", 0, 0, timescale, duration) + b"\x00" * 80)
    hdlr = _box(b"hdlr", b"\x00" * 8 + handler + b"\x00" * 12 + b"sound\x00")
    trak = _box(b"trak", _box(b"tkhd", b"\x00" * 84) + _box(b"mdia", _box(b"mdhd", b"\x00" * 24) + hdlr))
    return _box(b"ftyp", b"M4A \x00\x00\x00\x00M4A isom") + _box(b"moov", mvhd + trak) + _box(b"mdat", b"\x00" * 64)


def flac(rate: int, total_samples: int) -> bytes:
    packed = (rate << 44) | (0 << 41) | (15 << 36) | total_samples
    streaminfo = b"\x10\x00\x10\x00" + b"\x00" * 6 + packed.to_bytes(8, "big") + b"\x00" * 16
    return b"fLaC" + b"\x80" + len(streaminfo).to_bytes(3, "big") + streaminfo + b"\xff\xf8" + b"\x00" * 32


# Real encoders (FFmpeg inside PyAV's wheel): what browsers and phones send, made from a WAV.
ENCODED = {"webm": ("webm", "libopus", 48000), "ogg": ("ogg", "libopus", 48000), "mp3": ("mp3", "libmp3lame", 44100),
           "m4a": ("ipod", "aac", 44100), "flac": ("flac", "flac", 16000)}


def encoded(wav_bytes: bytes, kind: str) -> bytes:
    """`wav_bytes` re-encoded as `kind` (a key of ENCODED), mono, as a recorder would write it."""
    import io

    import av

    container_format, codec, rate = ENCODED[kind]
    out = io.BytesIO()
    with av.open(io.BytesIO(wav_bytes)) as source, av.open(out, mode="w", format=container_format) as target:
        stream = target.add_stream(codec, rate=rate, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        frames = [f for frame in source.decode(audio=0) for f in resampler.resample(frame)]
        for frame in [*frames, *resampler.resample(None)]:
            frame.pts = None
            target.mux(stream.encode(frame))
        target.mux(stream.encode(None))
    return out.getvalue()
