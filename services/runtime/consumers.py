"""A durable consumer and its typed handlers, declared together: the one way a service handles messages.

    renders = Consumer(ConsumerSpec("renderer-commands", COMMANDS_STREAM, command_subject("render.step")),
                       workers=4)

    @renders.on(RenderStep)
    async def render(job: RenderStep, envelope: Envelope) -> None:
        ...

    runtime.bus.consume(renders)

As FastStream's users write a subscriber (subject, durable and typed handler in one place), with the
delivery policy kept explicit in `services.runtime.delivery`: malformed, unknown or refused messages are
dead-lettered with the reason, failures retried, outages waited out.
"""

from __future__ import annotations

from typing import TypeVar

from contracts import REGISTRY, Message
from contracts.registry import MessageRegistry
from services.runtime.delivery import HandlerTable
from services.runtime.streams import ConsumerSpec

__all__ = ["Consumer"]

M = TypeVar("M", bound=Message)


class Consumer(HandlerTable[M]):
    """`spec`: the durable consumer; `workers`: messages handled at once per process.

    `ignore_others`: an event consumer sees every type its filter matches and skips those it has no
    handler for; a command consumer (the default) dead-letters them, since nobody else will act.
    """

    def __init__(self, spec: ConsumerSpec, *, workers: int = 1, ignore_others: bool = False,
                 registry: MessageRegistry = REGISTRY) -> None:
        super().__init__(registry, ignore_others=ignore_others)
        self.spec = spec
        self.workers = workers
