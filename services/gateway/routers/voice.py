"""Voice: a spoken chat message, transcribed, then sent and answered exactly as a typed one (SSE)."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter, ValidationError

from contracts import VoiceInput
from contracts.fields import CharacterId
from services.gateway.context import Gateway
from services.gateway.deps import GatewayDep, UserDep
from services.gateway.errors import PayloadTooLarge, Unavailable, Unprocessable, UnsupportedMedia
from services.gateway.routers.chat import STREAM_DOC, chat_target, reply_stream
from services.gateway.sse_frames import compact_json, sse_frame
from services.gateway.text_guard import unstorable
from services.gateway.uploads import parse_multipart, read_body
from services.gateway.voice.audio import Limits, read_recording, too_large
from services.gateway.voice.transcribers import Transcriber, transcribe, transcriber_from

__all__ = ["router", "transcriber_of"]

router = APIRouter(tags=["chat"])

_CHARACTER_ID = TypeAdapter(CharacterId)
_VOICE_FORM = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["audio", "character_id"],
            "properties": {
                "audio": {"type": "string", "format": "binary",
                          "description": "the spoken message: WebM (Opus or PCM, as browsers record it), Ogg, WAV, "
                                         "MP3, M4A or FLAC, judged by its content. The offline recognizer reads WAV "
                                         "and WebM/PCM; an OpenAI-compatible backend reads them all"},
                "character_id": {"type": "string", "description": "who the message is for"},
                "conversation_id": {"type": "string", "format": "uuid",
                                    "description": "omit to start a new conversation"},
            },
        }}},
    },
}
_VOICE_DOC = {200: {
    "description": "text/event-stream: first `transcript` {text, backend, model, seconds, audio_seconds, "
                   "audio_sha256, kept}, then the events of POST /chat/stream for that text",
    "content": STREAM_DOC[200]["content"],
}}


@router.post("/chat/voice", responses=_VOICE_DOC, openapi_extra=_VOICE_FORM,
             summary="Send a spoken message; its transcript, then the reply, stream back (SSE)")
async def chat_voice(request: Request, user: UserDep, gateway: GatewayDep) -> StreamingResponse:
    settings = gateway.settings
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMedia("send the recording as multipart/form-data, in a file field named `audio`, with "
                               "`character_id`", code="multipart_required")
    try:
        body = await read_body(request, settings.gateway_voice_max_bytes)
    except PayloadTooLarge:
        declared = request.headers.get("content-length", "")
        raise too_large(int(declared) if declared.isdigit() else settings.gateway_voice_max_bytes + 1,
                        settings.gateway_voice_max_bytes) from None
    parts = parse_multipart(content_type, body)
    audio = parts.get("audio")
    if audio is None:
        raise Unprocessable("send the recording in a file field named `audio`", code="audio_missing")
    fields = {name: part.text() for name, part in parts.items() if name != "audio"}
    target = await chat_target(gateway, user, _character_id(fields.get("character_id", "")),
                               _conversation_id(fields.get("conversation_id", "")))
    limits = Limits(settings.gateway_voice_max_bytes, settings.gateway_voice_max_seconds,
                    settings.gateway_voice_min_level_dbfs)
    # Off the event loop: the level of a long WAV is measured sample by sample.
    recording = await asyncio.to_thread(read_recording, audio.data, limits)
    transcript = await transcribe(transcriber_of(gateway), recording)
    if (why := unstorable(transcript.text)) is not None:
        raise Unavailable(f"the transcription server answered text that {why}; try again",
                          code="transcription_unavailable")
    if settings.keep_voice:
        await gateway.blobs.put_bytes(recording.data, recording.format.media_type)
    voice = VoiceInput(backend=transcript.backend, model=transcript.model, seconds=round(transcript.seconds, 4),
                       audio_seconds=round(recording.seconds, 3), audio_sha256=recording.sha256,
                       audio_media_type=recording.format.media_type, kept=settings.keep_voice)
    opening = sse_frame("transcript", compact_json({"text": transcript.text, **voice.model_dump(mode="json")}))
    return await reply_stream(gateway, user, target, transcript.text, voice=voice, opening=opening)


def transcriber_of(gateway: Gateway) -> Transcriber:
    """The process's transcriber, made on first use (most gateways never hear a voice; the offline one's
    model costs ~100 MB) and closed with the runtime."""
    transcriber = getattr(gateway.runtime.app.state, "voice_transcriber", None)
    if transcriber is None:
        transcriber = gateway.runtime.app.state.voice_transcriber = transcriber_from(gateway.settings)

        async def close(_runtime: object) -> None:
            await transcriber.aclose()

        gateway.runtime.on_shutdown(close)
    return transcriber


def _character_id(value: str) -> str:
    if not value:
        raise Unprocessable("send `character_id`: who the message is for", code="character_id_missing")
    try:
        return _CHARACTER_ID.validate_python(value)
    except ValidationError:
        raise Unprocessable(f"`character_id` {value[:70]!r} is not a character id (lowercase letters, digits, - "
                            "and _)", code="invalid_field") from None


def _conversation_id(value: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Unprocessable(f"`conversation_id` {value[:70]!r} is not a UUID; omit it to start a new conversation",
                            code="invalid_field") from None
