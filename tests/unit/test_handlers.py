"""The delivery policy without NATS: what happens to each kind of message and failure."""

from __future__ import annotations

import uuid

import pytest

from contracts import REGISTRY, CharacterThresholdSet, ImageRef, RenderStep
from contracts.subjects import command_subject, event_subject
from services.runtime.handlers import Action, HandlerTable, PoisonMessage, TransientError, handle_delivery
from tests.factories import threshold_event, wrap

IMAGE = ImageRef(sha256="cd" * 32, media_type="image/jpeg", width=64, height=64, bytes=10)


def command() -> tuple[bytes, str]:
    chain = uuid.uuid4()
    step = RenderStep(chain_id=chain, step=0, attempt=1, seed=1, input_image=IMAGE, prompt="p", width=512,
                      height=512, steps=8, cfg=1.0, model="m", template="t")
    return wrap(step, f"chain-{chain}").to_bytes(), command_subject("render.step")


async def deliver(table: HandlerTable, raw: bytes, subject: str, deliveries: int = 1):
    return await handle_delivery(table, raw, subject, deliveries, max_deliver=3, retry_delay_s=0.5)


async def test_a_handled_message_is_acked_after_its_handler_ran() -> None:
    seen = []
    table = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(RenderStep)
    async def handle(message: RenderStep, _env) -> None:
        seen.append(message.prompt)

    verdict = await deliver(table, *command())
    assert verdict.action is Action.ACK and seen == ["p"]


async def test_events_without_a_handler_are_skipped_but_commands_are_dead_lettered() -> None:
    event = threshold_event("character-zoe")
    subject = event_subject(event.type, event.stream)
    assert (await deliver(HandlerTable(REGISTRY, ignore_others=True), event.to_bytes(), subject)).action is Action.ACK
    verdict = await deliver(HandlerTable(REGISTRY, ignore_others=False), *command())
    assert verdict.action is Action.DEAD_LETTER and "no handler for 'render.step'" in verdict.reason


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"[1, 2]", b'{"type": "render.step"}'])
async def test_bytes_that_are_not_an_envelope_are_dead_lettered(raw: bytes) -> None:
    verdict = await deliver(HandlerTable(REGISTRY, ignore_others=True), raw, command_subject("render.step"))
    assert verdict.action is Action.DEAD_LETTER and "not a Likeness envelope" in verdict.reason


async def test_failures_are_retried_with_growing_delay_then_dead_lettered() -> None:
    table = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(RenderStep)
    async def handle(_message, _env) -> None:
        raise TransientError("backend busy")

    raw, subject = command()
    first, second, last = [await deliver(table, raw, subject, n) for n in (1, 2, 3)]
    assert (first.action, first.delay_s) == (Action.RETRY, 0.5)
    assert (second.action, second.delay_s) == (Action.RETRY, 1.0)
    assert last.action is Action.DEAD_LETTER and "failed 3 times" in last.reason and "backend busy" in last.reason


async def test_a_poison_message_is_dead_lettered_at_once() -> None:
    table = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(RenderStep)
    async def handle(_message, _env) -> None:
        raise PoisonMessage("template does not exist")

    verdict = await deliver(table, *command())
    assert verdict.action is Action.DEAD_LETTER and "template does not exist" in verdict.reason


async def test_a_message_delivered_past_the_limit_without_answer_is_dead_lettered_unrun() -> None:
    ran = []
    table = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(RenderStep)
    async def handle(_message, _env) -> None:
        ran.append(1)

    verdict = await deliver(table, *command(), deliveries=4)
    assert verdict.action is Action.DEAD_LETTER and "without an answer" in verdict.reason and not ran


async def test_an_event_on_another_streams_subject_is_refused() -> None:
    event = threshold_event("character-zoe")
    table = HandlerTable(REGISTRY, ignore_others=True)
    table.on(CharacterThresholdSet)(lambda *_: None)
    verdict = await deliver(table, event.to_bytes(), event_subject(event.type, "character-max"))
    assert verdict.action is Action.DEAD_LETTER and "does not belong on subject" in verdict.reason
