"""The planner's `threshold-*` streams: kept scores in, learned thresholds out (policy in `thresholds`).

The planner is their single writer (it sees every `StepAccepted` as it decides it); replicas race through
the shared writer's expected version, and event ids derive from the chain event that caused them, so a
redelivered result records nothing twice. Chat's `character-*` stream is never written here.

The chain's append and this one are two transactions: a planner that dies between them loses that one
sample (the redelivered result finds its chain already moved on and decides nothing). A sample, not a
decision: the threshold is learned from the next ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from contracts import CharacterScoreKept, Envelope, StepAccepted
from contracts.streams import threshold_stream
from services.planner.saga.state import ChainState
from services.planner.thresholds import LearnedState, ThresholdRule, decide, evolve
from services.runtime.eventstore import EventStore
from services.runtime.writer import Stamp, StreamWriter

__all__ = ["LearnedThresholds"]


class LearnedThresholds:
    def __init__(self, store: EventStore, clock: Callable[[], datetime], rule: ThresholdRule, *,
                 cache_size: int = 1_000) -> None:
        self._writer = StreamWriter(store, LearnedState(), evolve, cache_size=cache_size)
        self._clock = clock
        self.rule = rule

    async def record(self, chain: ChainState, accepted: StepAccepted, cause: Envelope) -> None:
        """Keep the score of a step accepted by the threshold; best attempts and unscored steps teach nothing."""
        request = chain.request
        if (accepted.decision != "threshold" or accepted.score is None or request is None
                or request.character_id is None or request.reference_image is None):
            return
        kept = CharacterScoreKept(character_id=request.character_id, reference_sha256=request.reference_image.sha256,
                                  chain_id=accepted.chain_id, step=accepted.step, score=accepted.score)
        stream = threshold_stream(kept.character_id, kept.reference_sha256)
        stamp = Stamp.caused_by(cause, f"threshold-{accepted.step}", self._clock())
        await self._writer.write(stream, lambda state: decide(state, kept, self.rule), stamp)

    async def threshold_for(self, character_id: str, reference_sha256: str) -> float | None:
        """The threshold learned for the character's face in this reference, if one was."""
        return (await self._writer.load(threshold_stream(character_id, reference_sha256))).threshold
