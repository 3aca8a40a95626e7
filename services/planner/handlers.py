"""The planner's handlers: parse, call the chain service, done. Policy lives in the saga."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol
from uuid import UUID

from contracts import (
    CHAIN_ENDS,
    REGISTRY,
    CancelChain,
    ContractError,
    Envelope,
    FaceCheckFailed,
    FaceScored,
    Message,
    RenderCompleted,
    RenderFailed,
    RequestChain,
    StepAccepted,
)
from contracts.streams import chain_stream
from services.planner.batches import BatchRecorder
from services.planner.chain_writer import ChainService
from services.planner.deadletters import abandoned, refused_request, result_envelope
from services.planner.learning import LearnedThresholds
from services.planner.saga import drift
from services.planner.saga.decide import Decision, PlanAccepted, PlanRefused, StartChain, Trigger
from services.planner.saga.state import ChainState, Status
from services.planner.settings import PlannerSettings
from services.runtime.consumers import Consumer
from services.runtime.delivery import DeadLetter, DeadLetterHandler, PoisonMessage
from services.runtime.streams import ConsumerSpec

__all__ = ["RequestPlanner", "command_consumer", "dead_letter_handler", "result_consumer"]

log = logging.getLogger(__name__)



class RequestPlanner(Protocol):
    """Turns a request into a plan (rules or LLM) or a refusal; may do I/O."""

    async def plan(self, request: RequestChain) -> tuple[PlanAccepted | PlanRefused, float | None]:
        """The plan, and the character's own threshold if it has one."""
        ...


def command_consumer(
    spec: ConsumerSpec, chains: ChainService, planner: RequestPlanner, batches: BatchRecorder, settings: PlannerSettings,
    learned: LearnedThresholds | None = None,
) -> Consumer:
    """Chain commands: requests (planned, then started) and cancellations."""
    table = Consumer(spec, workers=settings.workers)

    @table.on(RequestChain)
    async def on_request(request: RequestChain, envelope: Envelope) -> None:
        async def start(state: ChainState) -> Trigger | None:
            # Plan only a chain that does not exist yet: a redelivered request costs no LLM call.
            if state.status is not Status.NEW:
                return None
            plan, threshold = await planner.plan(request)
            return await _start_chain(request, plan, threshold, chains, settings, learned)

        decision = await chains.handle(request.chain_id, envelope, start)
        # A variant of a batch may be refused when planned: the batch is then complete without it.
        if _ends(decision):
            await batches.chain_ended(await chains.load(chain_stream(request.chain_id)), envelope)

    @table.on(CancelChain)
    async def on_cancel(cancel: CancelChain, envelope: Envelope) -> None:
        decision = await chains.handle(cancel.chain_id, envelope, _always(cancel))
        if _ends(decision):
            await batches.chain_ended(await chains.load(chain_stream(cancel.chain_id)), envelope)

    return table


def result_consumer(spec: ConsumerSpec, chains: ChainService, batches: BatchRecorder, *, workers: int,
                    learned: LearnedThresholds | None = None) -> Consumer:
    """Renderer or facecheck results; each is a trigger for the chain it belongs to."""
    table = Consumer(spec, workers=workers, ignore_others=True)

    async def on_result(result: Message, envelope: Envelope) -> None:
        await _advance(chains, batches, result.chain_id, envelope, result, learned)

    for model in (RenderCompleted, RenderFailed, FaceScored, FaceCheckFailed):
        table.on(model)(on_result)
    return table


def dead_letter_handler(
    chains: ChainService, batches: BatchRecorder, clock: Callable[[], datetime]
) -> DeadLetterHandler:
    """Dead letters: a command the renderer or facecheck gave up on ends its attempt, a chain request the
    planner gave up on is refused with the reason (see `deadletters`)."""

    async def on_dead_letter(letter: DeadLetter) -> None:
        try:
            command_envelope = Envelope.from_bytes(letter.data)
            command = command_envelope.open(REGISTRY)
        except ContractError as exc:
            raise PoisonMessage(f"not a message the planner can read: {exc}") from exc
        refusal = refused_request(command, letter.reason)
        if refusal is not None:
            # The ids derive from the request's own envelope: a repeated letter records nothing new.
            await _advance(chains, batches, refusal.request.chain_id, command_envelope, refusal)
            return
        trigger = abandoned(command, letter.reason)
        if trigger is None:
            log.debug("ignoring a dead %s of %s: the planner did not send it", command_envelope.type, letter.consumer)
            return
        cause = result_envelope(trigger, command_envelope, clock())
        await _advance(chains, batches, trigger.result.chain_id, cause, trigger)

    return on_dead_letter


async def _advance(chains: ChainService, batches: BatchRecorder, chain_id: UUID, cause: Envelope,
                   trigger: Trigger, learned: LearnedThresholds | None = None) -> None:
    """Feed one trigger to its chain; the end of a chain may complete its batch, an accepted step teaches the
    character's threshold (also when redelivered: that write is idempotent too, and may be the one owed)."""
    decision = await chains.handle(chain_id, cause, _always(trigger))
    accepted = [event for event in decision.events if isinstance(event, StepAccepted)]
    if learned is not None and accepted:
        state = await chains.load(chain_stream(chain_id))
        for event in accepted:
            await learned.record(state, event, cause)
    if _ends(decision):
        await batches.chain_ended(await chains.load(chain_stream(chain_id)), cause)


async def _start_chain(request: RequestChain, plan: PlanAccepted | PlanRefused, threshold: float | None,
                       chains: ChainService, settings: PlannerSettings,
                       learned: LearnedThresholds | None) -> StartChain:
    """The saga's start: the threshold (the character's own, else one learned from its kept scores, else the
    default) and the drift a follow-up inherits from the chain whose picture it edits."""
    source = "character" if threshold is not None else "default"
    if threshold is None and learned is not None and request.character_id and request.reference_image:
        found = await learned.threshold_for(request.character_id, request.reference_image.sha256)
        if found is not None:
            # Never above the default, also when the default was lowered after the threshold was learned.
            threshold, source = min(found, settings.threshold), "learned"
    inherited = 0.0
    if settings.drift_budget is not None and request.parent_chain_id is not None and request.input_image:
        parent = await chains.load(chain_stream(request.parent_chain_id))
        inherited = drift.inherited(parent.drifts, request.branch_from_step)
    return StartChain(request, plan, threshold=settings.threshold if threshold is None else threshold,
                      max_retries=settings.max_retries, on_exhausted=settings.on_exhausted,
                      retry_ladder=settings.retry_ladder, restore_template=settings.restore_template,
                      threshold_source=source, inherited_drift=inherited, drift_budget=settings.drift_budget)


def _ends(decision: Decision) -> bool:
    return any(event.type in CHAIN_ENDS for event in decision.events)


def _always(trigger: Trigger):
    async def given(_state: ChainState) -> Trigger:
        return trigger

    return given
