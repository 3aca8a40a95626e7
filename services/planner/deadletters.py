"""What a dead letter means for the chain it belongs to.

The renderer and facecheck dead-letter a command they give up on (its handler failed on every
delivery, or refused it); its answer will then never come, and without this the chain would wait
in "running" forever. The planner reads such a dead letter as that answer, a failed render or a
failed face check, and feeds it to the saga like any result: the saga's (step, attempt) matching
ignores a dead letter of a stale attempt, and ids derived from the command make a redelivered one
change nothing. A chain request the planner itself gave up on is answered as a refusal with the
reason, so whoever asked hears back. Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime

from contracts import Envelope, FaceCheckFailed, Message, RenderFailed, RenderStep, RequestChain, ScoreFace
from contracts.streams import chain_stream
from services.planner.saga.decide import Abandoned, PlanRefused, StartChain
from services.runtime.ids import derived_id

__all__ = ["abandoned", "refused_request", "result_envelope"]

# The rule a ChainRefused records for a request the planner could not handle.
DEAD_LETTER_RULE = "planner.dead_letter"


def abandoned(command: Message, reason: str) -> Abandoned | None:
    """The saga trigger a dead-lettered `command` stands for; None for messages the planner did not send."""
    if isinstance(command, RenderStep):
        return Abandoned(RenderFailed(chain_id=command.chain_id, step=command.step, attempt=command.attempt,
                                      error_kind="internal", reason=f"the renderer gave up on this step: {reason}"))
    if isinstance(command, ScoreFace):
        return Abandoned(FaceCheckFailed(chain_id=command.chain_id, step=command.step, attempt=command.attempt,
                                         reason=f"the face check gave up on this image: {reason}"))
    return None


def refused_request(command: Message, reason: str) -> StartChain | None:
    """A dead-lettered chain request, answered as a refusal that says why; None for any other message."""
    if not isinstance(command, RequestChain):
        return None
    return StartChain(request=command, plan=PlanRefused(
        reason=f"the planner could not handle this request ({reason[:300]}); try again, or report it if it "
               "happens again", rule=DEAD_LETTER_RULE))


def result_envelope(trigger: Abandoned, command: Envelope, now: datetime) -> Envelope:
    """The envelope the stand-in result arrives in, as if the service had answered `command`.

    Its id derives from the command's, so every delivery of the same dead letter (or a second
    dead letter of the same command) leads to the very same chain events.
    """
    result = trigger.result
    return Envelope.caused_by(result, command, event_id=derived_id(command.event_id, "dead-letter"),
                              stream=chain_stream(result.chain_id), occurred_at=now)
