"""Someone speaking, for the voice tests and bench/voice.py: espeak-ng (Debian's package) says a sentence
into a WAV file, offline, in one of the voices and at one of the speeds it offers.

espeak-ng writes 16-bit mono at 22050 Hz. `speak(..., pad_s=...)` adds silence around the words, as a
person leaves before and after speaking into a push-to-talk button.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import wave

__all__ = ["ESPEAK", "RECOGNISABLE", "VOICES", "speak", "tone"]

ESPEAK = shutil.which("espeak-ng")
# (voice, words per minute): espeak-ng's variants differ most in pitch and formants.
VOICES = (("en-us+f5", 150), ("en-us+f5", 180), ("en-us+f2", 150), ("en-us+f3", 150), ("en-us", 150),
          ("en-gb-x-rp", 150), ("en-us+m3", 140))
# The voice PocketSphinx's en-us model hears best of those (bench/voice.py prints them all).
RECOGNISABLE = ("en-us+f5", 150)


def speak(text: str, *, voice: str = RECOGNISABLE[0], speed: int = RECOGNISABLE[1], pad_s: float = 0.0) -> bytes:
    """The WAV file of espeak-ng saying `text`."""
    if ESPEAK is None:
        raise RuntimeError("voice tests need espeak-ng (apt-get install espeak-ng): it speaks their sentences")
    spoken = subprocess.run([ESPEAK, "-v", voice, "-s", str(speed), "--stdout", text], check=True,
                            capture_output=True, timeout=60).stdout
    if not pad_s:
        return spoken
    with wave.open(io.BytesIO(spoken)) as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    silence = b"\x00" * (int(params.framerate * pad_s) * params.sampwidth * params.nchannels)
    return _wav(silence + frames + silence, params.framerate)


def tone(seconds: float, *, rate: int = 16000, hz: float = 440.0, amplitude: float = 0.3) -> bytes:
    """A WAV of a sine tone (`amplitude` 0: digital silence): sound that is not speech."""
    samples = bytearray()
    for n in range(int(seconds * rate)):
        samples += int(amplitude * 32767 * math.sin(2 * math.pi * hz * n / rate)).to_bytes(2, "little", signed=True)
    return _wav(bytes(samples), rate)


def _wav(frames: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setnchannels(1)
        target.setsampwidth(2)
        target.setframerate(rate)
        target.writeframes(frames)
    return out.getvalue()
