"""Transcribers: one interface, chosen by the gateway's settings (`gateway_voice_backend`).

    PocketSphinx      the embedded offline recognizer: English, its model inside its wheel (no download);
                      reads uncompressed samples, in worker processes (sphinx_worker.py)
    OpenAICompatible  any /v1/audio/transcriptions server, through the openai SDK (openai_compatible.py)

`transcribe(transcriber, recording)` times the call and tidies the text; an empty one is 422 no_speech.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Protocol

from services.gateway.errors import Unavailable, Unprocessable, UpstreamTimeout
from services.gateway.settings import GatewaySettings
from services.gateway.voice.audio import Recording, no_speech

__all__ = ["PocketSphinx", "Transcriber", "Transcript", "transcribe", "transcriber_from"]

# Below this the en-us model's filter bank reaches past the Nyquist frequency (it was trained on 16 kHz audio).
_MIN_RATE = 16_000
_WORKER_START_S = 30.0
# What the chat takes as one message (contracts.SendChatMessage.text).
_MAX_TEXT = 8000


class Transcriber(Protocol):
    backend: str
    model: str

    async def transcribe(self, recording: Recording) -> str:
        """The words spoken in the recording; raises the gateway error that says why not."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Transcript:
    text: str
    backend: str
    model: str
    # Wall-clock seconds from handing the recording over to having its text.
    seconds: float


async def transcribe(transcriber: Transcriber, recording: Recording) -> Transcript:
    started = time.perf_counter()
    text = " ".join((await transcriber.transcribe(recording)).split())[:_MAX_TEXT]
    seconds = time.perf_counter() - started
    if not text:
        raise no_speech(f"{transcriber.backend} heard no words in the {recording.seconds:.1f}s recording")
    return Transcript(text, transcriber.backend, transcriber.model, seconds)


def transcriber_from(settings: GatewaySettings) -> Transcriber:
    if settings.gateway_voice_backend == "openai":
        from services.gateway.voice.openai_compatible import OpenAICompatible

        return OpenAICompatible(base_url=settings.gateway_voice_base_url, model=settings.gateway_voice_model,
                                api_key=settings.gateway_voice_api_key.get_secret_value(),
                                language=settings.gateway_voice_language, timeout_s=settings.gateway_voice_timeout_s)
    return PocketSphinx(workers=settings.gateway_voice_workers, timeout_s=settings.gateway_voice_timeout_s)


class _WorkerDied(Exception):
    pass


class _Worker:
    """One `sphinx_worker` process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.gateway.voice.sphinx_worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        worker = cls(process)
        try:
            async with asyncio.timeout(_WORKER_START_S):
                if await process.stdout.readline() != b"ready\n":  # type: ignore[union-attr]
                    raise _WorkerDied("the recognizer process stopped while loading its model")
        except BaseException:
            worker.kill()
            raise
        return worker

    async def recognize(self, samples: bytes, rate: int) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(f"{rate} {len(samples)}\n".encode() + samples)
            await self.process.stdin.drain()
            line = await self.process.stdout.readline()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _WorkerDied(str(exc)) from None
        if not line:
            raise _WorkerDied(f"the recognizer process ended (exit status {self.process.returncode})")
        answer = json.loads(line)
        if "error" in answer:
            raise _WorkerDied(answer["error"])
        return str(answer.get("text") or "")

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            self.kill()
            await self.process.wait()


class PocketSphinx:
    """The embedded recognizer, in up to `workers` processes (each holds its ~100 MB model), started on first use."""

    backend = "pocketsphinx"
    model = "en-us"

    def __init__(self, *, workers: int = 1, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self._idle: list[_Worker] = []
        self._free = asyncio.Semaphore(workers)

    async def transcribe(self, recording: Recording) -> str:
        pcm = recording.pcm
        if pcm.rate < _MIN_RATE:
            raise Unprocessable(f"the recording is sampled at {pcm.rate} Hz; the offline recognizer needs at least "
                                f"{_MIN_RATE} Hz. Record at 16 kHz or more", code="sample_rate_too_low")
        async with self._free:
            worker = self._idle.pop() if self._idle else None
            try:
                async with asyncio.timeout(self.timeout_s):
                    worker = worker or await _Worker.start()
                    text = await worker.recognize(pcm.samples, pcm.rate)
            except TimeoutError:
                # The decode cannot be interrupted: the process goes, and the next request starts another.
                if worker is not None:
                    worker.kill()
                raise UpstreamTimeout(f"the offline recognizer took more than {self.timeout_s:g}s; say it in shorter "
                                      "parts", code="transcription_timeout") from None
            except (_WorkerDied, OSError, ValueError) as exc:
                if worker is not None:
                    worker.kill()
                raise Unavailable(f"the offline recognizer failed ({exc}); send the message again",
                                  code="transcription_unavailable") from None
            except BaseException:
                # Cancelled (the client left): its answer would be read as the next request's.
                if worker is not None:
                    worker.kill()
                raise
            self._idle.append(worker)
            return text

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(worker.stop() for worker in idle), return_exceptions=True)
