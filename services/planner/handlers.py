"""The planner's handlers: parse, call the chain service, done. Policy lives in the saga."""

from __future__ import annotations

from typing import Protocol

from contracts import (
    REGISTRY,
    CancelChain,
    Envelope,
    FaceCheckFailed,
    FaceScored,
    Message,
    RenderCompleted,
    RenderFailed,
    RequestChain,
)
from services.planner.batches import BatchRecorder
from contracts.streams import chain_stream
from services.planner.chains import ChainService
from services.planner.saga.decide import PlanAccepted, PlanRefused, StartChain, Trigger
from services.planner.saga.state import ChainState, Status
from services.planner.settings import PlannerSettings
from services.runtime.handlers import HandlerTable

__all__ = ["RequestPlanner", "command_handlers", "result_handlers"]

_CHAIN_ENDS = {"chain.completed", "chain.failed", "chain.cancelled"}


class RequestPlanner(Protocol):
    """Turns a request into a plan (rules or LLM) or a refusal; may do I/O."""

    async def plan(self, request: RequestChain) -> tuple[PlanAccepted | PlanRefused, float | None]:
        """The plan, and the character's own threshold if it has one."""
        ...


def command_handlers(
    chains: ChainService, planner: RequestPlanner, batches: BatchRecorder, settings: PlannerSettings
) -> HandlerTable:
    table = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(RequestChain)
    async def on_request(request: RequestChain, envelope: Envelope) -> None:
        async def start(state: ChainState) -> Trigger | None:
            # Plan only a chain that does not exist yet: a redelivered request costs no LLM call.
            if state.status is not Status.NEW:
                return None
            plan, threshold = await planner.plan(request)
            return StartChain(request, plan, threshold=settings.threshold if threshold is None else threshold,
                              max_retries=settings.max_retries, on_exhausted=settings.on_exhausted)

        await chains.handle(request.chain_id, envelope, start)

    @table.on(CancelChain)
    async def on_cancel(cancel: CancelChain, envelope: Envelope) -> None:
        decision = await chains.handle(cancel.chain_id, envelope, _always(cancel))
        if decision.events:
            await batches.chain_ended(await chains.load(chain_stream(cancel.chain_id)), envelope)

    return table


def result_handlers(chains: ChainService, batches: BatchRecorder) -> HandlerTable:
    """Renderer and facecheck results; each is a trigger for the chain it belongs to."""
    table = HandlerTable(REGISTRY, ignore_others=True)

    async def on_result(result: Message, envelope: Envelope) -> None:
        decision = await chains.handle(result.chain_id, envelope, _always(result))
        if any(event.type in _CHAIN_ENDS for event in decision.events):
            await batches.chain_ended(await chains.load(chain_stream(result.chain_id)), envelope)

    for model in (RenderCompleted, RenderFailed, FaceScored, FaceCheckFailed):
        table.on(model)(on_result)
    return table


def _always(trigger: Trigger):
    async def given(_state: ChainState) -> Trigger:
        return trigger

    return given
