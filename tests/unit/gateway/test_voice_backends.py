"""The transcribers behind /chat/voice: what the offline one refuses before starting, the OpenAI-compatible
one against a fake server over a real socket (its refusals, its 500s, its silence), and the settings."""

from __future__ import annotations

import pytest

from services.gateway.errors import GatewayError
from services.gateway.settings import GatewaySettings
from services.gateway.voice.audio import Limits, Recording, read_recording
from services.gateway.voice.openai_compatible import OpenAICompatible
from services.gateway.voice.transcribers import PocketSphinx, transcribe, transcriber_from
from tests.fakes.audio_files import encoded, sine, wav
from tests.fakes.speech import speak
from tests.fakes.openai_server import ErrorReply
from tests.fakes.threaded_server import Hang
from tests.fakes.transcription_server import FakeTranscriber

LIMITS = Limits(max_bytes=2_000_000, max_seconds=30.0, min_level_dbfs=-45.0)
SPEECHLIKE = wav([sine(1.0, 16000, amplitude=0.4)], 16000)


def recording(data: bytes = SPEECHLIKE) -> Recording:
    return read_recording(data, LIMITS)


async def fails(transcriber, rec: Recording, status: int, code: str) -> str:
    with pytest.raises(GatewayError) as caught:
        await transcribe(transcriber, rec)
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.detail
    return caught.value.detail


class Says:
    """A transcriber that hears what it is told to (for the shared `transcribe` step alone)."""

    backend, model = "scripted", "words"

    def __init__(self, text: str) -> None:
        self.text = text

    async def transcribe(self, rec: Recording) -> str:
        return self.text

    async def aclose(self) -> None:
        pass


async def test_the_transcript_is_tidied_and_no_words_are_no_speech() -> None:
    transcript = await transcribe(Says("  send me\n a picture  "), recording())
    assert (transcript.text, transcript.backend, transcript.model) == ("send me a picture", "scripted", "words")
    assert transcript.seconds >= 0
    assert "heard no words" in await fails(Says(" \n"), recording(), 422, "no_speech")


@pytest.mark.parametrize("kind", ["webm", "mp3", "m4a"])
async def test_the_offline_recognizer_hears_compressed_recordings_decoded_to_pcm(kind: str) -> None:
    sphinx = PocketSphinx()
    try:
        heard = await sphinx.transcribe(recording(encoded(speak("show me a picture of you on the beach",
                                                                  pad_s=0.3), kind)))
    finally:
        await sphinx.aclose()
    assert "picture" in heard.split()


async def test_the_offline_recognizer_needs_16_khz() -> None:
    detail = await fails(PocketSphinx(), recording(wav([sine(1.0, 8000)], 8000)), 422, "sample_rate_too_low")
    assert "8000 Hz" in detail


async def test_a_recognizer_process_that_died_is_a_503_and_the_next_message_starts_another() -> None:
    sphinx = PocketSphinx()
    try:
        assert await sphinx.transcribe(recording()) == ""  # a tone has no words
        (worker,) = sphinx._idle
        worker.process.kill()
        await worker.process.wait()
        assert "failed" in await fails(sphinx, recording(), 503, "transcription_unavailable")
        assert await sphinx.transcribe(recording()) == ""
        assert sphinx._idle[0] is not worker and sphinx._idle[0].process.returncode is None
    finally:
        await sphinx.aclose()


async def test_a_server_gets_the_recording_as_it_came_named_by_its_format() -> None:
    data = encoded(SPEECHLIKE, "ogg")
    with FakeTranscriber(["send me a picture of you at the beach"]) as server:
        client = OpenAICompatible(base_url=server.url, model="whisper-1", language="en", timeout_s=5)
        transcript = await transcribe(client, recording(data))
        await client.aclose()
    assert transcript.text == "send me a picture of you at the beach" and transcript.backend == "openai"
    (seen,) = server.requests
    assert (seen["filename"], seen["content_type"], seen["bytes"]) == ("voice.ogg", "audio/ogg", len(data))
    assert (seen["model"], seen["language"], seen["response_format"]) == ("whisper-1", "en", "json")


async def test_plain_text_answers_are_read_too() -> None:
    with FakeTranscriber(["hello there"], quirks=["plain_text"]) as server:
        client = OpenAICompatible(base_url=server.url, model="whisper-1", timeout_s=5)
        assert (await transcribe(client, recording())).text == "hello there"
        await client.aclose()


async def test_one_500_is_tried_again_two_are_unavailable() -> None:
    with FakeTranscriber(["hello there"], quirks=["every_other_500"]) as server:
        client = OpenAICompatible(base_url=server.url, model="whisper-1", timeout_s=5)
        assert (await transcribe(client, recording())).text == "hello there"
        assert len(server.requests) == 2
        await client.aclose()
    with FakeTranscriber([ErrorReply(500, "CUDA out of memory"), ErrorReply(502, "bad gateway")]) as server:
        client = OpenAICompatible(base_url=server.url, model="whisper-1", timeout_s=5)
        assert "HTTP 502: bad gateway" in await fails(client, recording(), 503, "transcription_unavailable")
        await client.aclose()


async def test_a_format_the_server_lacks_is_its_refusal_not_ours() -> None:
    with FakeTranscriber(["never"], quirks=["wav_only"]) as server:
        client = OpenAICompatible(base_url=server.url, model="whisper-1", timeout_s=5)
        detail = await fails(client, recording(encoded(SPEECHLIKE, "ogg")), 422, "transcription_refused")
        assert "Invalid file format" in detail and len(server.requests) == 1  # a refusal is not retried
        await client.aclose()


async def test_a_wrong_model_or_key_is_the_operators_to_fix() -> None:
    with FakeTranscriber(["never"], api_key="right") as server:
        client = OpenAICompatible(base_url=server.url, model="whisper-1", api_key="wrong", timeout_s=5)
        assert "LIKENESS_GATEWAY_VOICE_" in await fails(client, recording(), 503, "transcription_unavailable")
        await client.aclose()
        client = OpenAICompatible(base_url=server.url, model="whisper-9", api_key="right", timeout_s=5)
        assert "whisper-9" in await fails(client, recording(), 503, "transcription_unavailable")
        await client.aclose()


async def test_a_hanging_or_absent_server() -> None:
    with FakeTranscriber([Hang(30)]) as server:
        client = OpenAICompatible(base_url=server.url, model="whisper-1", timeout_s=0.5)
        assert "within 0.5s" in await fails(client, recording(), 504, "transcription_timeout")
        await client.aclose()
    client = OpenAICompatible(base_url=f"{server.url}", model="whisper-1", timeout_s=2)
    assert "cannot be reached" in await fails(client, recording(), 503, "transcription_unavailable")
    await client.aclose()


async def test_whisper_hears_thanks_in_silence_so_silence_never_reaches_it() -> None:
    silent = wav([[0.0] * 16000], 16000)
    with FakeTranscriber(["never asked"], quirks=["thanks_for_silence"]) as server:
        client = OpenAICompatible(base_url=server.url, model="whisper-1", timeout_s=5)
        # What the server would say, asked directly: the hallucination the level check keeps out.
        rec = Recording(silent, recording().format, "pcm", 1.0, "0" * 64, None)
        assert (await transcribe(client, rec)).text == "Thank you."
        await client.aclose()
    with pytest.raises(GatewayError) as caught:
        read_recording(silent, LIMITS)
    assert caught.value.code == "no_speech"


def test_the_backend_is_chosen_by_settings() -> None:
    assert isinstance(transcriber_from(GatewaySettings()), PocketSphinx)
    chosen = transcriber_from(GatewaySettings(gateway_voice_backend="openai", gateway_voice_base_url="http://h:1/v1",
                                              gateway_voice_model="whisper-large-v3-turbo"))
    assert isinstance(chosen, OpenAICompatible) and chosen.model == "whisper-large-v3-turbo"


def test_the_openai_backend_needs_a_server_or_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="LIKENESS_GATEWAY_VOICE_BASE_URL"):
        GatewaySettings(gateway_voice_backend="openai", gateway_voice_base_url=" ")
    assert GatewaySettings(gateway_voice_backend="openai", gateway_voice_api_key="sk-x").gateway_voice_base_url is None
    monkeypatch.setenv("LIKENESS_KEEP_VOICE", "true")
    assert GatewaySettings().keep_voice is True
    monkeypatch.setenv("LIKENESS_KEEP_VOICE", "false")
    assert GatewaySettings().keep_voice is False
