"""A fake OpenAI-compatible transcription server: real HTTP on a real socket, scripted transcripts, recorded requests.

In tests: `with FakeTranscriber(["send me a picture of you at the beach"]) as stt:` then point a client at
`stt.url` and read `stt.requests`. As a process: `python -m tests.fakes.transcription_server --port 0
[--script script.json]`, which prints `fake-transcriber listening on http://127.0.0.1:PORT/v1`. A script is
{"replies": [reply, ...], "default": reply, "quirks": [...], "models": [...]}; a reply is "text" |
{"hang": seconds} | {"error": {"status": 500, "message": "..."}}.

Speaks POST /v1/audio/transcriptions (multipart: `file`, `model`, `response_format`, `language`, ...) in
OpenAI's wire shapes: {"text": ...} for json, the bare text for `text`, OpenAI's error body otherwise. Like
OpenAI it goes by the file name's extension and refuses one it does not know with HTTP 400; an unknown model
is a 404; with `api_key` set, a wrong key is a 401. QUIRKS are the ways real servers were seen to misbehave.
"""

from __future__ import annotations

import hashlib
import io
import wave
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tests.fakes.multipart import parse_multipart
from tests.fakes.openai_server import ErrorReply
from tests.fakes.threaded_server import Hang, ScriptedServer, process_arguments, read_script

__all__ = ["FORMATS", "QUIRKS", "FakeTranscriber", "TranscriptLike", "reply_from_json"]

# The extensions OpenAI's endpoint takes (its 400 lists them).
FORMATS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
QUIRKS = frozenset({
    "wav_only",  # a server built without a decoder (whisper.cpp's server without --convert): HTTP 400 unless WAV
    "every_other_500",  # an overloaded self-hosted server: every other request fails with HTTP 500
    "thanks_for_silence",  # Whisper's best-known hallucination: a silent recording comes back as "Thank you."
    "plain_text",  # a server that answers text/plain whatever response_format asked for
})

TranscriptLike = str | Hang | ErrorReply
Responder = Callable[[dict[str, Any]], TranscriptLike | None]


def reply_from_json(value: Any) -> TranscriptLike:
    match value:
        case str():
            return value
        case {"hang": seconds}:
            return Hang(float(seconds))
        case {"error": dict(error)}:
            return ErrorReply(int(error.get("status", 500)), error.get("message", "scripted error"),
                              error.get("type", "server_error"), error.get("code"))
    raise ValueError(f"not a transcription reply: {value!r}")


class FakeTranscriber(ScriptedServer[TranscriptLike]):
    """The fake server, run in a thread as a context manager.

    `requests`: what each transcription request held (model, file name and type, size, sha256, fields).
    A transcript comes from the queue, else `responder(request)`, else `by_sha256[audio sha256]`, else `default`.
    """

    name = "fake-transcriber"

    def __init__(self, replies: Iterable[TranscriptLike] = (), *, default: TranscriptLike | None = None,
                 responder: Responder | None = None, by_sha256: dict[str, str] | None = None,
                 models: Iterable[str] = ("whisper-1",), api_key: str | None = None, quirks: Iterable[str] = (),
                 record: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(replies, host=host, port=port, record=record)
        self.quirks = frozenset(quirks)
        if unknown := self.quirks - QUIRKS:
            raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}")
        self.default, self.responder, self.by_sha256 = default, responder, dict(by_sha256 or {})
        self.models, self.api_key = frozenset(models), api_key
        self._served = 0

    @property
    def url(self) -> str:
        """The base URL an OpenAI client takes (ends in /v1)."""
        return f"{self.base}/v1"

    def next_reply(self, request: dict[str, Any]) -> TranscriptLike:
        with self.lock:
            reply = self.replies.popleft() if self.replies else None
        if reply is None and self.responder is not None:
            reply = self.responder(request)
        if reply is None:
            reply = self.by_sha256.get(request["sha256"], self.default)
        return reply if reply is not None else ErrorReply(500, "fake transcriber: no scripted transcript left")

    def app(self) -> FastAPI:
        return create_app(self)


def _error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
           code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status)


def create_app(fake: FakeTranscriber) -> FastAPI:
    app = FastAPI(title="fake OpenAI-compatible transcription server")

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        if fake.api_key is not None and request.headers.get("authorization") != f"Bearer {fake.api_key}":
            return _error(401, "Incorrect API key provided", code="invalid_api_key")
        try:
            parts = {part.name: part for part in parse_multipart(request.headers.get("content-type", ""),
                                                                 await request.body())}
        except ValueError:
            return _error(400, "Expected a multipart/form-data body")
        upload = parts.get("file")
        fields = {name: part.data.decode("utf-8", "replace") for name, part in parts.items() if name != "file"}
        if upload is None or upload.filename is None:
            return _error(400, "Missing required parameter: 'file'", param="file")
        data = upload.data
        seen = {"model": fields.get("model"), "filename": upload.filename, "content_type": upload.content_type,
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                **{k: v for k, v in fields.items() if k != "model"}}
        fake.log(seen)
        with fake.lock:
            fake._served += 1
            served = fake._served
        if "every_other_500" in fake.quirks and served % 2 == 1:
            return _error(500, "The server had an error while processing your request. Sorry about that!",
                          "server_error")
        if seen["model"] not in fake.models:
            return _error(404, f"The model `{seen['model']}` does not exist or you do not have access to it.",
                          code="model_not_found")
        extension = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
        accepted = ("wav",) if "wav_only" in fake.quirks else FORMATS
        if extension not in accepted:
            return _error(400, f"Invalid file format. Supported formats: {list(accepted)}", param="file")
        reply = fake.next_reply(seen)
        if isinstance(reply, Hang):
            await fake.hang(request, reply.seconds)
            return _error(504, "fake transcriber: hung as scripted", "server_error")
        if isinstance(reply, ErrorReply):
            return _error(reply.status, reply.message, reply.type, code=reply.code)
        if "thanks_for_silence" in fake.quirks and _silent_wav(data):
            reply = "Thank you."
        if "plain_text" in fake.quirks or fields.get("response_format") == "text":
            return PlainTextResponse(reply + "\n")
        return JSONResponse({"text": reply})

    fake.add_fake_routes(app, reply_from_json)
    return app


def _silent_wav(data: bytes) -> bool:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            frames = wav.readframes(wav.getnframes())
            width = wav.getsampwidth()
    except (wave.Error, EOFError):
        return False
    return width == 2 and all(abs(int.from_bytes(frames[i:i + 2], "little", signed=True)) < 64
                              for i in range(0, len(frames), 2))


def main(argv: list[str] | None = None) -> None:
    """Run the fake as a process until SIGINT/SIGTERM."""
    parser = process_arguments("tests.fakes.transcription_server", __doc__, "JSON file of scripted transcripts")
    parser.add_argument("--api-key", help="require this bearer key")
    args = parser.parse_args(argv)
    script = read_script(args.script)
    default = script.get("default")
    FakeTranscriber([reply_from_json(r) for r in script.get("replies", [])],
                    default=None if default is None else reply_from_json(default),
                    models=script.get("models", ("whisper-1",)), quirks=script.get("quirks", ()),
                    api_key=args.api_key, host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
