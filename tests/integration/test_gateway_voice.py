"""POST /chat/voice over real NATS and Postgres: a recording spoken by espeak-ng, transcribed by the embedded
PocketSphinx (its own worker process) or by a fake OpenAI-compatible server over a real socket, then sent
and answered as a typed message; and every refusal (413, 415, 422) before anything is sent or paid for.

The world's fakes (tests/fakes/gateway_world.py) answer the chat message; a second gateway on the same
NATS and Postgres runs with the other backend and LIKENESS_KEEP_VOICE on.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from contracts import REGISTRY, SendChatMessage
from tests.conftest import Backends
from tests.faces import face_of
from tests.fakes.audio_files import webm
from tests.fakes.gateway_world import GatewayWorld, RunningGateway
from tests.fakes.openai_server import ErrorReply
from tests.fakes.speech import ESPEAK, speak, tone
from tests.fakes.transcription_server import FakeTranscriber
from tests.integration.gateway_helpers import assert_error, sse_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REQUEST = "show me a picture of you on the beach"
MAX_BYTES = 400_000
MAX_SECONDS = 8.0


@pytest.fixture(scope="module")
def spoken() -> bytes:
    if ESPEAK is None:
        pytest.fail("the voice tests need espeak-ng to speak their requests: apt-get install espeak-ng")
    return speak(REQUEST, pad_s=0.3)


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_sse_heartbeat_s=1.0,
                               gateway_voice_max_bytes=MAX_BYTES, gateway_voice_max_seconds=MAX_SECONDS).start()
    await world.chat.builtin("ayla-test", "Ayla")
    yield world
    await world.close()


@contextlib.asynccontextmanager
async def gateway_with(world: GatewayWorld, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """Another gateway process's worth (in this process) on the world's NATS and Postgres, with these settings."""
    running = await RunningGateway(world.settings.model_copy(update={"http_port": 0, **settings})).start()
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=60.0) as client:
            yield client
    finally:
        await running.stop()


async def say(client: httpx.AsyncClient, audio: bytes, filename: str = "voice.wav", **fields: str
              ) -> list[tuple[str, dict]]:
    """POST /chat/voice and read the whole SSE answer as (event, data) pairs."""
    files = {"audio": (filename, audio, "application/octet-stream")}
    async with client.stream("POST", "/chat/voice", files=files, data=fields) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [(e.event, e.json()) async for e in sse_events(response.aiter_lines())]


def sent_messages(world: GatewayWorld) -> list[SendChatMessage]:
    return [e.open(REGISTRY) for e in world.chat.commands if e.type == "chat.send_message"]


async def test_a_spoken_request_is_heard_offline_then_answered_as_typed_text(world: GatewayWorld, alice,
                                                                             spoken: bytes) -> None:
    events = await say(alice, spoken, character_id="ayla-test")
    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["transcript", "accepted"] and kinds[-1] == "reply" and "delta" in kinds, kinds
    transcript = events[0][1]
    # PocketSphinx's en-us model on espeak-ng's voice: close enough for the chat's picture rules.
    words = transcript["text"].split()
    assert {"show", "me", "picture", "beach"} <= set(words), transcript
    assert transcript["backend"] == "pocketsphinx" and transcript["model"] == "en-us"
    assert transcript["seconds"] > 0
    assert transcript["audio_seconds"] == pytest.approx((len(spoken) - 44) / 2 / 22050, abs=0.01)
    assert transcript["audio_sha256"] == hashlib.sha256(spoken).hexdigest() and transcript["kept"] is False
    # The transcript is the message: sent, answered and turned into a picture request like typed text.
    assert events[-1][1]["text"] == f"You said: {transcript['text']}"
    image = next(data for kind, data in events if kind == "image")
    assert events[-1][1]["chain_id"] == image["chain_id"]
    sent = sent_messages(world)[-1]
    assert sent.text == transcript["text"] and sent.voice is not None
    assert sent.voice.model_dump(mode="json") == {k: v for k, v in transcript.items() if k != "text"}
    # LIKENESS_KEEP_VOICE is off: the recording is gone once heard; only its hash is recorded.
    assert not await world.blobs.exists(transcript["audio_sha256"])

    # The conversation goes on by voice, as typed messages do.
    conversation = events[1][1]["conversation_id"]
    again = await say(alice, spoken, character_id="ayla-test", conversation_id=conversation)
    assert again[1] == ("accepted", {"conversation_id": conversation, "message_id": again[1][1]["message_id"]})


async def test_refusals_are_clear_and_send_nothing(world: GatewayWorld, alice, bob, spoken: bytes) -> None:
    before = len(sent_messages(world))

    async def refused(status: int, code: str, audio: bytes | None = None, **fields: str) -> str:
        # Without a file, a form field alone keeps the body multipart.
        files = {"audio": ("voice.wav", audio, "application/octet-stream")} if audio is not None else {
            "note": (None, "no recording")}
        response = await alice.post("/chat/voice", files=files, data={"character_id": "ayla-test", **fields})
        return assert_error(response, status, code)["detail"]

    assert_error(await alice.post("/chat/voice", json={"character_id": "ayla-test"}), 415, "multipart_required")
    assert "`audio`" in await refused(422, "audio_missing")
    assert "`character_id`" in await refused(422, "character_id_missing", spoken, character_id="")
    await refused(422, "invalid_field", spoken, character_id="../etc")
    await refused(404, "character_not_found", spoken, character_id="nobody-here")
    await refused(422, "invalid_field", spoken, conversation_id="not-a-uuid")
    assert "not audio" in await refused(415, "unsupported_audio", face_of(0))
    assert "empty" in await refused(422, "no_speech", b"")
    assert "silent" in await refused(422, "no_speech", tone(1.0, amplitude=0.0))
    assert "at most 8s" in await refused(422, "audio_too_long", tone(MAX_SECONDS + 2, rate=8000))
    assert f"at most {MAX_BYTES} bytes" in await refused(413, "audio_too_large", tone(14.0))
    # Far over the limit: refused while the body is still arriving.
    assert "a spoken message may have" in await refused(413, "audio_too_large", b"\x00" * (MAX_BYTES * 3))
    # Opus in WebM is decoded here (PyAV) and checked like any recording: empty packets are silence.
    assert "silent" in await refused(422, "no_speech", webm("A_OPUS", [b"\x00" * 30] * 50))
    # Another user's conversation is not yours to speak in.
    events = await say(alice, spoken, character_id="ayla-test")
    response = await bob.post("/chat/voice", files={"audio": ("v.wav", spoken, "audio/wav")},
                              data={"character_id": "ayla-test", "conversation_id": events[1][1]["conversation_id"]})
    assert_error(response, 404, "conversation_not_found")
    assert len(sent_messages(world)) == before + 1  # only the one that was heard


async def test_an_openai_compatible_server_transcribes_and_kept_voices_stay(world: GatewayWorld,
                                                                          spoken: bytes) -> None:
    with FakeTranscriber(default=REQUEST, models=["whisper-large-v3-turbo"]) as server:
        async with gateway_with(world, gateway_voice_backend="openai", gateway_voice_base_url=server.url,
                                gateway_voice_model="whisper-large-v3-turbo", keep_voice=True) as client:
            events = await say(client, spoken, character_id="ayla-test")
            transcript = events[0][1]
            assert (transcript["text"], transcript["backend"], transcript["model"]) == (
                REQUEST, "openai", "whisper-large-v3-turbo")
            assert server.requests[-1]["sha256"] == transcript["audio_sha256"]
            # LIKENESS_KEEP_VOICE on: the recording is in the blob store, byte for byte.
            assert transcript["kept"] is True and await world.blobs.get(transcript["audio_sha256"]) == spoken
            assert sent_messages(world)[-1].voice.kept is True

            # What the offline recognizer cannot read (Opus, as browsers record it) goes to the server as it is.
            opus = webm("A_OPUS", [b"\xfc" + b"\x00" * 30] * 50)
            events = await say(client, opus, "recording.bin", character_id="ayla-test")
            assert events[0][0] == "transcript" and server.requests[-1]["filename"] == "voice.webm"

            # An overloaded server's 500 is tried once more; twice is a 503 that says so.
            server.push(ErrorReply(500, "CUDA out of memory"))
            assert (await say(client, spoken, character_id="ayla-test"))[0][1]["text"] == REQUEST
            server.push(ErrorReply(500, "CUDA out of memory"), ErrorReply(500, "CUDA out of memory"))
            response = await client.post("/chat/voice", files={"audio": ("v.wav", spoken, "audio/wav")},
                                         data={"character_id": "ayla-test"})
            assert "CUDA out of memory" in assert_error(response, 503, "transcription_unavailable")["detail"]

            # Silence never reaches the server (where Whisper would hear "Thank you.").
            asked = len(server.requests)
            response = await client.post("/chat/voice", files={"audio": ("v.wav", tone(1.0, amplitude=0.0),
                                                                         "audio/wav")},
                                         data={"character_id": "ayla-test"})
            assert_error(response, 422, "no_speech")
            assert len(server.requests) == asked
