"""The delivery service's two durable consumers: chain events in, attempts out.

    delivery-chain-events  (LIKENESS_EVENTS, likeness.evt.chain.>)       a chain completed, failed or accepted a
                           step: owe it to each destination that wants it (`DeliveryRequested` + `Deliver`)
    delivery-attempts      (LIKENESS_COMMANDS, likeness.cmd.delivery.deliver)  make one attempt

Both are shared by every replica. An attempt that is not due yet, or held by another replica's live
claim, goes back to JetStream with the wait as its delay (RetryLater): the message is the timer.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from contracts import ChainCompleted, ChainFailed, Deliver, Envelope, StepAccepted
from contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM, command_subject, event_filter
from services.delivery.application import ChainUnknown, Deliveries
from services.runtime.consumers import Consumer
from services.runtime.delivery import PoisonMessage
from services.runtime.streams import ConsumerSpec

__all__ = ["attempt_consumer", "chain_consumer"]

log = logging.getLogger(__name__)


def chain_consumer(deliveries: Deliveries, *, ack_wait_s: float) -> Consumer:
    consumer = Consumer(ConsumerSpec("delivery-chain-events", EVENTS_STREAM, event_filter("chain"),
                                     ack_wait_s=ack_wait_s), workers=4, ignore_others=True)
    window = timedelta(seconds=deliveries.settings.delivery_retry_window_s)

    async def owe(event: ChainCompleted | ChainFailed | StepAccepted, envelope: Envelope) -> None:
        # A consumer made afresh reads the stream from its start: events older than the retry window are
        # history, not news, and are not sent (a replay still sends one on request).
        if deliveries.clock() - envelope.occurred_at > window:
            log.debug("not delivering %s of %s: older than the retry window", envelope.type, envelope.stream)
            return
        try:
            await deliveries.on_chain_event(envelope, event.chain_id)
        except ChainUnknown as exc:
            raise PoisonMessage(str(exc)) from None

    for model in (ChainCompleted, ChainFailed, StepAccepted):
        consumer.on(model)(owe)
    return consumer


def attempt_consumer(deliveries: Deliveries, *, workers: int, ack_wait_s: float) -> Consumer:
    consumer = Consumer(ConsumerSpec("delivery-attempts", COMMANDS_STREAM, command_subject(Deliver.model_fields[
        "type"].default), ack_wait_s=ack_wait_s), workers=workers)

    @consumer.on(Deliver)
    async def deliver(command: Deliver, envelope: Envelope) -> None:
        await deliveries.attempt(command, envelope)

    return consumer
