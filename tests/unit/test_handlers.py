"""The delivery policy without NATS: what happens to each kind of message and failure."""

from __future__ import annotations

import uuid

import pytest

from contracts import REGISTRY, CharacterThresholdSet, ImageRef, RenderStep
from contracts.subjects import command_subject, event_subject
from services.runtime.delivery import (
    Action,
    DeadLetter,
    HandlerTable,
    PoisonMessage,
    RetryLater,
    TransientError,
    handle_dead_letter,
    handle_delivery,
)
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


async def test_a_message_not_due_yet_comes_back_after_exactly_the_wait_it_names() -> None:
    table = HandlerTable(REGISTRY, ignore_others=False)

    @table.on(RenderStep)
    async def handle(_message, _env) -> None:
        raise RetryLater("due in 42 s", 42.0)

    raw, subject = command()
    # Even on the last delivery: a schedule is not a failure, so it is never given up on as one.
    for deliveries in (1, 3):
        verdict = await deliver(table, raw, subject, deliveries)
        assert (verdict.action, verdict.delay_s, verdict.scheduled) == (Action.RETRY, 42.0, True)


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


LETTER = DeadLetter(data=b"not even an envelope", reason="failed 3 times, last: boom",
                    original_subject=command_subject("render.step"), consumer="renderer", deliveries=3)


async def read_back(handler, deliveries: int = 1):
    return await handle_dead_letter(handler, LETTER, deliveries, max_deliver=3, retry_delay_s=0.5)


def test_a_dead_letter_reads_back_from_the_headers_it_was_stored_with() -> None:
    assert DeadLetter.read(LETTER.data, LETTER.headers()) == LETTER
    long = DeadLetter(data=b"", reason="x" * 5000, original_subject="s", consumer="c", deliveries=1)
    assert len(long.headers()["Likeness-Reason"]) == 1000


def test_a_dead_letter_without_headers_reads_as_unknown_rather_than_failing() -> None:
    letter = DeadLetter.read(b"raw", {"Likeness-Deliveries": "many"})
    assert (letter.data, letter.reason, letter.consumer, letter.deliveries) == (b"raw", "no reason given", "", 0)
    assert DeadLetter.read(b"raw", None).reason == "no reason given"


async def test_a_dead_letter_handler_gets_the_bytes_and_reason_unchecked_and_is_acked() -> None:
    seen = []

    async def handle(letter: DeadLetter) -> None:
        seen.append((letter.data, letter.reason))

    verdict = await read_back(handle)
    assert verdict.action is Action.ACK and seen == [(LETTER.data, LETTER.reason)]


async def test_a_failing_dead_letter_handler_is_retried_then_dropped_never_dead_lettered_again() -> None:
    async def handle(_letter: DeadLetter) -> None:
        raise TransientError("database down")

    first, last = await read_back(handle, 1), await read_back(handle, 3)
    assert (first.action, first.delay_s) == (Action.RETRY, 0.5)
    assert last.action is Action.DROP and "failed 3 times" in last.reason and "database down" in last.reason


async def test_a_dead_letter_refused_by_its_handler_or_past_the_limit_is_dropped() -> None:
    async def refuse(_letter: DeadLetter) -> None:
        raise PoisonMessage("unreadable")

    refused = await read_back(refuse)
    assert refused.action is Action.DROP and "unreadable" in refused.reason
    ran = []

    async def handle(_letter: DeadLetter) -> None:
        ran.append(1)

    assert (await read_back(handle, deliveries=4)).action is Action.DROP and not ran
