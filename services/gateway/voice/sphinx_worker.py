"""`python -m services.gateway.voice.sphinx_worker`: PocketSphinx in a process of its own.

The decoder holds the GIL for the whole utterance (about a quarter of the audio's length), which would
stall every stream the gateway serves; in its own process it does not, and a decode that overruns its
deadline can be ended by killing the process.

Protocol on stdin/stdout: the worker writes `ready` once the model is loaded; then for each request
`<sample rate> <byte count>\\n` followed by that many bytes of 16-bit little-endian mono samples, it
answers one JSON line, {"text": "..."} or {"error": "..."}. End of input ends it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO

__all__ = ["main", "recognize"]


def recognize(decoder, samples: bytes, rate: int) -> str:
    """The words PocketSphinx hears in the samples ("" for none)."""
    if decoder.config["samprate"] != rate:
        # Only the feature extraction depends on the rate: the acoustic model and dictionary stay loaded.
        decoder.config["samprate"] = rate
        decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(samples, full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return hypothesis.hypstr if hypothesis is not None else ""


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    from pocketsphinx import Decoder  # imported here: the gateway process never loads the model itself

    decoder = Decoder(samprate=16000, logfn=os.devnull)
    answers.write(b"ready\n")
    answers.flush()
    while line := requests.readline():
        try:
            rate, size = (int(part) for part in line.split())
            samples = requests.read(size)
            answer = {"text": recognize(decoder, samples, rate)}
        except Exception as exc:  # the gateway reports it; the worker lives on for the next request
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()


def main() -> None:
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
