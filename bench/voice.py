"""Voice (issue 14): how well and how fast each transcription backend hears spoken requests, and how long
a spoken message takes from letting go of the key to the first word of the reply.

    PYTHONPATH=. .venv/bin/python bench/voice.py [--rounds 10] [--quick]

Speech: espeak-ng (Debian's package) speaks each of SENTENCES in each of tests/fakes/speech.VOICES (voice and
words per minute) into a WAV, offline. Per backend and voice:

  WER       word error rate against the sentence (substitutions + deletions + insertions / words)
  requests  of the sentences that ask for a picture or an edit, how many the chat's phrase rules still find
            in the transcript (what a user notices: the picture starts, or it does not)
  RTF       real-time factor, seconds of transcription per second of audio (median over the utterances)

Backends: PocketSphinx (the embedded default, in its worker process as the gateway runs it), on the WAV as
espeak-ng writes it (22.05 kHz) and, when scipy is installed, resampled to 16 kHz as the web page sends it;
the fake OpenAI-compatible server (tests/fakes/transcription_server.py: real HTTP, transcripts scripted,
so its WER is 0 by construction and its RTF is the HTTP path alone: the baseline the others are divided by);
and a real server when LIKENESS_BENCH_VOICE_BASE_URL (+ _MODEL, _API_KEY) is set.

Release -> first reply delta: a real gateway in this process on embedded NATS + Postgres (bench/_backends.py),
the fake chat of tests/fakes/gateway_world.py answering, timed from sending the request to the first `delta`
frame; typed text (POST /chat/stream) is the baseline in the same run. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import statistics
import sys
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._backends import backends, machine  # noqa: E402
from services.chat.follow_up import edit_request  # noqa: E402
from services.chat.intent import picture_request  # noqa: E402
from services.gateway.voice.audio import Limits, Recording, read_recording  # noqa: E402
from services.gateway.voice.openai_compatible import OpenAICompatible  # noqa: E402
from services.gateway.voice.transcribers import PocketSphinx, Transcriber  # noqa: E402
from tests.fakes.gateway_world import GatewayWorld, RunningGateway  # noqa: E402
from tests.fakes.speech import ESPEAK, RECOGNISABLE, VOICES, speak  # noqa: E402
from tests.fakes.transcription_server import FakeTranscriber  # noqa: E402

SENTENCES = (
    "show me a picture of you on the beach",
    "send me a photo of you at the beach",
    "can i see you wearing a red dress",
    "take a selfie in the park",
    "now make her wave",
    "change the background to a snowy mountain",
    "go back to the previous picture",
    "start over in a cafe",
    "hello how was your day",
    "what do you like to do on weekends",
)
LIMITS = Limits(max_bytes=50_000_000, max_seconds=600, min_level_dbfs=-60)


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def edits(reference: list[str], heard: list[str]) -> int:
    row = list(range(len(heard) + 1))
    for i, said in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, got in enumerate(heard, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (said != got))
    return row[-1]


def asks(text: str) -> bool:
    """Whether the chat's phrase rules find a picture or an edit request in the text."""
    return picture_request(text) is not None or edit_request(text) is not None


def to_16k(wav_bytes: bytes) -> bytes | None:
    try:
        import numpy as np
        from scipy.signal import resample_poly
    except ImportError:
        return None
    with wave.open(io.BytesIO(wav_bytes)) as source:
        rate, frames = source.getframerate(), source.readframes(source.getnframes())
    samples = resample_poly(np.frombuffer(frames, dtype=np.int16).astype(np.float64), 16000, rate)
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setnchannels(1)
        target.setsampwidth(2)
        target.setframerate(16000)
        target.writeframes(np.clip(samples, -32768, 32767).astype(np.int16).tobytes())
    return out.getvalue()


class Tally:
    def __init__(self) -> None:
        self.errors = self.total = self.asked = self.kept = 0
        self.rtf: list[float] = []

    def add(self, said: str, heard: str, seconds: float, audio_seconds: float) -> None:
        self.errors += edits(words(said), words(heard))
        self.total += len(words(said))
        if asks(said):
            self.asked += 1
            self.kept += asks(heard)
        self.rtf.append(seconds / audio_seconds)

    def row(self, backend: str, voice: str) -> str:
        return (f"{backend:<28}{voice:<16}{self.errors / self.total:>6.2f}{f'{self.kept}/{self.asked}':>10}"
                f"{statistics.median(self.rtf):>10.3f}{max(self.rtf):>9.3f}")


async def measure(name: str, transcriber: Transcriber, clips: dict[tuple[str, int], list[tuple[str, Recording]]],
                  show: bool = False) -> Tally:
    overall = Tally()
    await transcriber.transcribe(next(iter(clips.values()))[0][1])  # warm-up: a process to start, a model to load
    for (voice, speed), spoken in clips.items():
        tally = Tally()
        for sentence, recording in spoken:
            started = time.perf_counter()
            heard = await transcriber.transcribe(recording)
            seconds = time.perf_counter() - started
            tally.add(sentence, heard, seconds, recording.seconds)
            overall.add(sentence, heard, seconds, recording.seconds)
            if show and words(heard) != words(sentence):
                print(f"    {voice}@{speed}: {sentence!r} -> {heard!r}")
        print(tally.row(name, f"{voice}@{speed}"))
    print(overall.row(name, "all voices"))
    return overall


async def accuracy(voices: tuple[tuple[str, int], ...], show: bool = False) -> dict[str, float]:
    print(f"speech: {len(SENTENCES)} sentences x {len(voices)} voices by espeak-ng; {machine()}")
    clips: dict[tuple[str, int], list[tuple[str, Recording]]] = {}
    resampled: dict[tuple[str, int], list[tuple[str, Recording]]] = {}
    for voice, speed in voices:
        for sentence in SENTENCES:
            data = speak(sentence, voice=voice, speed=speed, pad_s=0.2)
            clips.setdefault((voice, speed), []).append((sentence, read_recording(data, LIMITS)))
            if (at_16k := to_16k(data)) is not None:
                resampled.setdefault((voice, speed), []).append((sentence, read_recording(at_16k, LIMITS)))
    audio = sum(r.seconds for spoken in clips.values() for _, r in spoken)
    print(f"        {audio:.0f} s of audio in all\n")
    print(f"{'backend':<28}{'voice':<16}{'WER':>6}{'requests':>10}{'RTF med':>10}{'RTF max':>9}")
    rtf: dict[str, float] = {}
    sphinx = PocketSphinx()
    try:
        rtf["pocketsphinx"] = statistics.median(
            (await measure("pocketsphinx 22.05 kHz", sphinx, clips, show)).rtf)
        if resampled:
            rtf["pocketsphinx 16k"] = statistics.median(
                (await measure("pocketsphinx 16 kHz", sphinx, resampled, show)).rtf)
    finally:
        await sphinx.aclose()
    scripted = {r.sha256: s for spoken in clips.values() for s, r in spoken}
    with FakeTranscriber(by_sha256=scripted) as server:
        fake = OpenAICompatible(base_url=server.url, model="whisper-1", timeout_s=30)
        rtf["fake endpoint"] = statistics.median((await measure("fake endpoint (scripted)", fake, clips)).rtf)
        await fake.aclose()
    if base_url := os.environ.get("LIKENESS_BENCH_VOICE_BASE_URL"):
        real = OpenAICompatible(base_url=base_url, model=os.environ.get("LIKENESS_BENCH_VOICE_MODEL", "whisper-1"),
                                api_key=os.environ.get("LIKENESS_BENCH_VOICE_API_KEY", ""), timeout_s=60)
        rtf["server"] = statistics.median((await measure(f"server {real.model}", real, clips)).rtf)
        await real.aclose()
    print()
    for name, value in rtf.items():
        if name != "fake endpoint":
            print(f"RTF ratio: {name} / fake endpoint (HTTP path alone) = {value / rtf['fake endpoint']:.1f}x")
    return rtf


async def first_delta_ms(post: Callable[[], Awaitable[httpx.Response]]) -> float:
    started = time.perf_counter()
    response = await post()
    try:
        async for line in response.aiter_lines():
            if line == "event: delta":
                return (time.perf_counter() - started) * 1000
    finally:
        await response.aclose()
    raise RuntimeError(f"no delta in the answer (HTTP {response.status_code})")


async def release_to_first_delta(nats_url: str, database_url: str, rounds: int) -> None:
    sentence = SENTENCES[0]
    spoken = speak(sentence, voice=RECOGNISABLE[0], speed=RECOGNISABLE[1], pad_s=0.2)
    seconds = read_recording(spoken, LIMITS).seconds
    print(f"\nrelease -> first reply delta through the gateway ({rounds} rounds after a warm-up, "
          f"a {seconds:.1f} s request):")
    results: dict[str, list[float]] = {}
    with FakeTranscriber(default=sentence) as server:
        world = await GatewayWorld(nats_url, database_url, gateway_sse_heartbeat_s=1.0).start()
        # A second gateway on the same NATS and Postgres, transcribing through the fake endpoint.
        endpoint = await RunningGateway(world.settings.model_copy(update={
            "http_port": 0, "gateway_voice_backend": "openai", "gateway_voice_base_url": server.url})).start()
        try:
            await world.chat.builtin("bench-voice", "Bea")
            targets = {"typed, POST /chat/stream": (world.url, "/chat/stream"),
                       "voice, pocketsphinx": (world.url, "/chat/voice"),
                       "voice, fake OpenAI endpoint": (endpoint.url, "/chat/voice")}
            async with httpx.AsyncClient(timeout=60) as client:
                for name, (base, path) in targets.items():

                    def post(url: str = base + path, typed: bool = path == "/chat/stream") -> Awaitable[httpx.Response]:
                        if typed:
                            request = client.build_request("POST", url, json={"character_id": "bench-voice",
                                                                              "text": sentence})
                        else:
                            request = client.build_request("POST", url, data={"character_id": "bench-voice"},
                                                           files={"audio": ("v.wav", spoken, "audio/wav")})
                        return client.send(request, stream=True)

                    await first_delta_ms(post)
                    results[name] = [await first_delta_ms(post) for _ in range(rounds)]
        finally:
            await endpoint.stop()
            await world.close()
    baseline = statistics.median(results["typed, POST /chat/stream"])
    for name, times in results.items():
        median = statistics.median(times)
        print(f"  {name:<32}median {median:>7.1f} ms   max {max(times):>7.1f} ms   {median / baseline:>6.1f}x typed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="two voices only")
    parser.add_argument("--transcripts", action="store_true", help="print every transcript that is not the sentence")
    args = parser.parse_args()
    if ESPEAK is None:
        sys.exit("bench/voice.py needs espeak-ng to speak its sentences: apt-get install espeak-ng")
    asyncio.run(accuracy(VOICES[:2] if args.quick else VOICES, args.transcripts))
    with backends() as (nats_url, database_url):
        asyncio.run(release_to_first_delta(nats_url, database_url, args.rounds))


if __name__ == "__main__":
    main()
