"""A recording's checks before any transcriber hears it: what it is (by content), how long it lasts (from its
container, before anything is decoded), its samples (compressed audio decoded with PyAV), the size and
duration limits, and silence."""

from __future__ import annotations

import math
import struct

import pytest

from services.gateway.errors import GatewayError
from services.gateway.voice.audio import Limits, read_recording
from services.gateway.voice.formats import Probe, probe_audio, sniff_audio
from services.gateway.voice.pcm import Pcm, loudest_dbfs
from tests.fakes.audio_files import ENCODED, encoded, flac, mp3, mp4, ogg, sine, wav, webm
from tests.faces import face_of

LIMITS = Limits(max_bytes=2_000_000, max_seconds=10.0, min_level_dbfs=-45.0)
TONE = sine(0.5, 16000)


def refused(data: bytes, status: int, code: str, limits: Limits = LIMITS) -> str:
    with pytest.raises(GatewayError) as caught:
        read_recording(data, limits)
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.detail
    return caught.value.detail


def timed(data: bytes) -> Probe:
    """What the container says (codec, length), as read before the limits are checked."""
    return probe_audio(data, sniff_audio(data))


def samples(pcm: Pcm) -> list[int]:
    return [v for (v,) in struct.iter_unpack("<h", pcm.samples)]


@pytest.mark.parametrize(("data", "name"), [
    (wav([TONE], 16000), "wav"),
    (webm("A_OPUS", [b"\x00" * 40]), "webm"),
    (ogg(b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00", 48000), "ogg"),
    (mp3(3), "mp3"),
    (mp3(3, id3=True), "mp3"),
    (mp4(timescale=1000, duration=2000), "m4a"),
    (flac(16000, 16000), "flac"),
])
def test_audio_is_known_by_its_content(data: bytes, name: str) -> None:
    assert sniff_audio(data).name == name


@pytest.mark.parametrize("data", [face_of(0), b'{"text": "hi"}', b"hello, this is text",
                                  b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\xff\xd8\xff\xe0" + b"\x00" * 64])
def test_anything_else_is_415(data: bytes) -> None:
    assert sniff_audio(data) is None
    assert "not audio" in refused(data, 415, "unsupported_audio")


def test_a_16_bit_wav_is_read_as_it_is_and_timed() -> None:
    recording = read_recording(wav([TONE], 16000), LIMITS)
    assert recording.format.media_type == "audio/wav" and recording.seconds == pytest.approx(0.5)
    assert recording.pcm.rate == 16000
    assert samples(recording.pcm)[:50] == [int(v * 32767) for v in TONE[:50]]


@pytest.mark.parametrize(("bits", "floating", "tolerance"), [(8, False, 400), (24, False, 2), (32, False, 2),
                                                             (32, True, 2), (64, True, 2)])
# 8-bit samples are 256 of the 16-bit steps apart, and scaled by 127 instead of 32767.
def test_every_pcm_sample_format_becomes_the_same_16_bit_samples(bits: int, floating: bool, tolerance: int) -> None:
    expected = samples(read_recording(wav([TONE], 16000), LIMITS).pcm)
    got = samples(read_recording(wav([TONE], 16000, bits=bits, floating=floating), LIMITS).pcm)
    assert len(got) == len(expected)
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= tolerance


def test_of_a_stereo_wav_the_first_channel_is_heard() -> None:
    recording = read_recording(wav([TONE, [0.0] * len(TONE)], 22050), LIMITS)
    assert recording.pcm.rate == 22050 and recording.seconds == pytest.approx(len(TONE) / 22050)
    assert samples(recording.pcm)[:50] == [int(v * 32767) for v in TONE[:50]]


def test_a_streamed_wav_whose_sizes_overshoot_is_timed_by_what_it_holds() -> None:
    # espeak-ng --stdout and browsers' live WAV writers leave 0x7ffff000 in the size fields.
    recording = read_recording(wav([TONE], 16000, data_size=0x7FFFF000), LIMITS)
    assert recording.seconds == pytest.approx(0.5)


def test_a_mu_law_wav_is_timed_and_decoded_with_pyav() -> None:
    recording = read_recording(wav([sine(0.5, 8000)], 8000, bits=8, tag=7), LIMITS)
    assert recording.seconds == pytest.approx(0.5) and recording.pcm.rate == 16000


def test_a_wav_without_its_chunks_is_damaged() -> None:
    assert "cannot be read" in refused(b"RIFF\x04\x00\x00\x00WAVE", 422, "damaged_audio")


def test_webm_pcm_as_mediarecorder_writes_it_is_decoded() -> None:
    tone = sine(0.2, 48000)
    blocks = [struct.pack(f"<{960}f", *tone[i:i + 960]) for i in range(0, len(tone), 960)]
    recording = read_recording(webm("A_PCM/FLOAT/IEEE", blocks), LIMITS)
    assert recording.format.name == "webm" and recording.codec == "A_PCM/FLOAT/IEEE"
    assert recording.pcm.rate == 48000 and recording.seconds == pytest.approx(0.2)
    assert samples(recording.pcm)[:20] == [int(v * 32767) for v in tone[:20]]


def test_webm_opus_is_timed_by_its_blocks_before_anything_is_decoded() -> None:
    probe = timed(webm("A_OPUS", [b"\xfc" + b"\x00" * 30] * 101))
    assert probe.codec == "A_OPUS" and probe.seconds == pytest.approx(2.0)  # the last block starts at 2.0 s
    # Decoded, empty Opus packets are silence: no transcriber is asked.
    assert "silent" in refused(webm("A_OPUS", [b"\x00" * 30] * 101), 422, "no_speech")


@pytest.mark.parametrize("kind", sorted(ENCODED))
def test_what_browsers_and_phones_record_is_decoded_to_16_khz_and_checked_for_silence(kind: str) -> None:
    spoken = encoded(wav([sine(1.5, 16000, amplitude=0.4)], 16000), kind)
    recording = read_recording(spoken, LIMITS)
    assert recording.pcm.rate == 16000 and recording.pcm.seconds == pytest.approx(1.5, abs=0.1)
    assert recording.seconds == pytest.approx(1.5, abs=0.1)
    assert "silent" in refused(encoded(wav([[0.0] * 16000], 16000), kind), 422, "no_speech")


def test_webm_with_a_duration_is_timed_by_it() -> None:
    assert timed(webm("A_OPUS", [b"\x00" * 30] * 3, duration_ms=4500.0)).seconds == pytest.approx(4.5)


def test_a_video_without_sound_is_not_audio() -> None:
    assert "no audio track" in refused(webm("V_VP8", [b"\x00" * 30], track_type=1), 415, "unsupported_audio")
    assert "no audio track" in refused(mp4(timescale=600, duration=600, handler=b"vide"), 415, "unsupported_audio")


def test_ogg_opus_and_vorbis_are_timed_by_their_last_granule() -> None:
    opus_head = b"OpusHead\x01\x01" + (312).to_bytes(2, "little") + (48000).to_bytes(4, "little") + b"\x00\x00\x00"
    assert timed(ogg(opus_head, 312 + 3 * 48000)).seconds == pytest.approx(3.0)
    vorbis_id = b"\x01vorbis" + b"\x00" * 4 + b"\x01" + (44100).to_bytes(4, "little") + b"\x00" * 16
    assert timed(ogg(vorbis_id, 44100 * 2)).seconds == pytest.approx(2.0)
    assert "neither Opus nor Vorbis" in refused(ogg(b"Speex   " + b"\x00" * 40, 8000), 415, "unsupported_audio")


def test_mp3_is_timed_by_its_frames() -> None:
    assert timed(mp3(100)).seconds == pytest.approx(100 * 1152 / 44100)
    assert timed(mp3(100, id3=True)).seconds == pytest.approx(100 * 1152 / 44100)
    assert "no MP3 audio" in refused(b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"not audio" * 10, 415, "unsupported_audio")


def test_m4a_is_timed_by_its_movie_header_and_a_fragmented_one_is_refused() -> None:
    assert timed(mp4(timescale=44100, duration=3 * 44100)).seconds == pytest.approx(3.0)
    assert "does not say how long" in refused(mp4(timescale=1000, duration=0), 422, "audio_length_unknown")


def test_flac_is_timed_by_its_streaminfo() -> None:
    assert timed(flac(16000, 40000)).seconds == pytest.approx(2.5)


def test_size_and_duration_limits() -> None:
    long = wav([sine(12.0, 8000)], 8000)
    assert "at most 10s" in refused(long, 422, "audio_too_long")
    assert "12.0s" in refused(long, 422, "audio_too_long")
    small = Limits(max_bytes=1000, max_seconds=10.0, min_level_dbfs=-45.0)
    assert "at most 1000 bytes" in refused(wav([TONE], 16000), 413, "audio_too_large", small)
    # Compressed audio is held to the same length limit: its container says how long it is.
    assert "at most 10s" in refused(mp3(500), 422, "audio_too_long")


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (wav([[0.0] * 16000], 16000), "digital silence"),
    (wav([[0.001] * 16000], 16000), "silent"),  # a constant offset is not sound
    (wav([sine(1.0, 16000, amplitude=0.002)], 16000), "silent"),  # a hum 54 dB down
    (wav([[]], 16000), "no sound"),
])
def test_empty_or_silent_audio_is_no_speech(data: bytes, why: str) -> None:
    assert why in refused(data, 422, "no_speech")


def test_the_loudest_moment_decides_not_the_average() -> None:
    quiet = sine(2.0, 16000, amplitude=0.0005)
    burst = quiet[:16000] + sine(0.05, 16000, amplitude=0.3) + quiet[16800:]
    assert read_recording(wav([burst], 16000), LIMITS).pcm is not None
    level = loudest_dbfs(read_recording(wav([burst], 16000), LIMITS).pcm)
    assert level == pytest.approx(20 * math.log10(0.3 / math.sqrt(2)), abs=0.5)
    assert loudest_dbfs(Pcm(b"\x00\x00" * 800, 16000)) == -math.inf
