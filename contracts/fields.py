"""Constrained field types that several message families share, so a bound is written once."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = [
    "Attempt",
    "CharacterId",
    "Cfg",
    "Denoise",
    "Dimension",
    "LoraStrength",
    "Reason",
    "SamplerSteps",
    "Score",
    "Seed",
    "StepIndex",
    "Timings",
    "UserId",
]

# A character id becomes part of the stream id `character-<id>`, itself a NATS subject token.
CharacterId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
UserId = Annotated[str, Field(min_length=1, max_length=128)]

StepIndex = Annotated[int, Field(ge=0)]
# Attempt 1 is the first render of a step; each retry adds one.
Attempt = Annotated[int, Field(ge=1)]
# ComfyUI samplers take any unsigned 64-bit seed.
Seed = Annotated[int, Field(ge=0, le=2**64 - 1)]
# Face similarity on a 0..100 scale (cosine x 100, negatives clamped to 0); thresholds share it.
Score = Annotated[float, Field(ge=0, le=100)]
Reason = Annotated[str, Field(min_length=1)]
# Per-phase durations in milliseconds, e.g. {"upload": 12.0, "queue": 3.5, "execute": 8100.0}.
Timings = dict[str, Annotated[float, Field(ge=0)]]

Dimension = Annotated[int, Field(ge=64, le=8192)]
SamplerSteps = Annotated[int, Field(ge=1, le=200)]
Cfg = Annotated[float, Field(ge=0, le=30)]
Denoise = Annotated[float, Field(ge=0, le=1)]
# Negative strengths are legal in ComfyUI (they push away from the LoRA's concept).
LoraStrength = Annotated[float, Field(ge=-4, le=4)]
