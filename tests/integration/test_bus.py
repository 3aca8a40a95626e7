"""The bus on real JetStream: redelivery after a crash, dead letters that never block the queue."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import REGISTRY, CharacterThresholdSet, ImageRef, RenderStep, RequestChain
from contracts.subjects import COMMANDS_STREAM, DEAD_LETTERS_STREAM, command_subject, dead_letter_subject, event_subject
from services.runtime.bus import Bus
from services.runtime.eventstore import EventStore
from services.runtime.consumers import Consumer
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ConsumerSpec
from tests.conftest import Backends, service_env
from tests.factories import new_stream, threshold_event, wrap

pytestmark = pytest.mark.integration

IMAGE = ImageRef(sha256="ab" * 32, media_type="image/png", width=512, height=512, bytes=1234)


def render_step(chain_id: uuid.UUID, prompt: str = "put her on a beach") -> RenderStep:
    return RenderStep(chain_id=chain_id, step=0, attempt=1, seed=7, input_image=IMAGE, prompt=prompt,
                      width=512, height=512, steps=8, cfg=1.0, model="qwen-image-edit", template="qwen_edit")


async def test_a_consumer_crash_before_ack_is_redelivered_and_changes_state_once(
    backends: Backends, store: EventStore, nc: nats.NATS
) -> None:
    stream = new_stream()
    durable = f"crashtest-{uuid.uuid4().hex[:8]}"
    subject = f"likeness.evt.character.threshold_set.{stream}"
    source = threshold_event(stream, 55.0)
    await nc.jetstream().publish(event_subject(source.type, stream), source.to_bytes(),
                                 headers={"Nats-Msg-Id": str(source.event_id)})
    env = service_env(backends, LIKENESS_ACK_WAIT_S="2", CRASHTEST_RUN_S="8")
    command = [sys.executable, "-m", "tests.integration.crashing_consumer", durable, subject]

    first = subprocess.run(command, env=env, capture_output=True, timeout=60)
    assert first.returncode == 3, first.stderr.decode()[-2000:]
    assert b"handled idempotent=False" in first.stdout

    second = subprocess.run(command, env=env, capture_output=True, timeout=60)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    assert b"handled idempotent=True" in second.stdout

    echoes = await store.read_stream(f"{stream}-echo")
    assert len(echoes) == 1
    info = await nc.jetstream().consumer_info("LIKENESS_EVENTS", durable)
    # One message, delivered twice (the crash, then the redelivery), now acked.
    assert info.num_ack_pending == 0 and info.num_pending == 0 and info.delivered.consumer_seq == 2
    await nc.jetstream().delete_consumer("LIKENESS_EVENTS", durable)


async def dead_letters(nc: nats.NATS, service: str) -> list[nats.aio.msg.Msg]:
    sub = await nc.jetstream().pull_subscribe(
        dead_letter_subject(service), durable=None, stream=DEAD_LETTERS_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
    )
    try:
        return await sub.fetch(100, timeout=1.0)
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        return []
    finally:
        await sub.unsubscribe()


async def test_bad_messages_are_dead_lettered_with_a_reason_and_never_block_the_next(
    settings: RuntimeSettings, nc: nats.NATS
) -> None:
    service = f"dlq{uuid.uuid4().hex[:8]}"
    bus = Bus(settings.model_copy(update={"service_name": service}))
    handled: list[RenderStep] = []
    subject = command_subject("render.step")
    spec = ConsumerSpec(f"{service}-render", COMMANDS_STREAM, subject, ack_wait_s=2.0)
    renders = Consumer(spec)

    @renders.on(RenderStep)
    async def on_render(message: RenderStep, _envelope) -> None:
        if message.prompt == "always fails":
            raise RuntimeError("ComfyUI said no")
        handled.append(message)

    bus.consume(renders)
    await bus.start()
    try:
        chain = uuid.uuid4()
        good = wrap(render_step(chain), f"chain-{chain}")
        wrong_type = good.model_copy(update={"type": "render.teleport", "event_id": uuid.uuid4()})
        wrong_version = good.model_copy(update={"version": 99, "event_id": uuid.uuid4()})
        other_command = wrap(RequestChain(chain_id=chain, character_id="luna", user_id="u1",
                                          request_text="beach", reference_image=IMAGE), f"chain-{chain}")
        invalid_body = good.model_copy(update={"data": {**good.data, "width": -5}, "event_id": uuid.uuid4()})
        failing = wrap(render_step(chain, "always fails"), f"chain-{chain}")
        bad = {
            "malformed": b'{"event_id": "not json',
            "wrong type": wrong_type.to_bytes(),
            "wrong version": wrong_version.to_bytes(),
            "type on the wrong subject": other_command.to_bytes(),
            "invalid body": invalid_body.to_bytes(),
            "handler keeps failing": failing.to_bytes(),
        }
        js = nc.jetstream()
        for payload in bad.values():
            await js.publish(subject, payload, headers={"Nats-Msg-Id": str(uuid.uuid4())})
        await js.publish(subject, good.to_bytes(), headers={"Nats-Msg-Id": str(good.event_id)})

        async def until_done() -> None:
            while not handled or len(await dead_letters(nc, service)) < len(bad):
                await asyncio.sleep(0.2)

        await asyncio.wait_for(until_done(), 30)
    finally:
        await bus.stop()
        await nc.jetstream().delete_consumer(COMMANDS_STREAM, spec.durable)

    assert handled == [good.open(REGISTRY)]
    letters = await dead_letters(nc, service)
    reasons = [m.headers["Likeness-Reason"] for m in letters]
    assert len(letters) == len(bad)
    assert any("not a Likeness envelope" in r for r in reasons)
    assert any("unknown message type 'render.teleport'" in r for r in reasons)
    assert any("version 99 is newer" in r for r in reasons)
    assert any("does not belong on subject" in r for r in reasons)
    assert any("width" in r for r in reasons)
    assert any(r.startswith("failed 3 times") and "ComfyUI said no" in r for r in reasons)
    assert {m.headers["Likeness-Original-Subject"] for m in letters} == {subject}
    assert letters[0].data == bad["malformed"]


async def test_shutdown_lets_the_handler_in_flight_finish_and_ack(settings: RuntimeSettings, nc: nats.NATS) -> None:
    service = f"graceful{uuid.uuid4().hex[:8]}"
    bus = Bus(settings.model_copy(update={"service_name": service}))
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow(_message, _envelope) -> None:
        started.set()
        await asyncio.sleep(1.0)
        finished.set()

    stream = new_stream()
    spec = ConsumerSpec(f"{service}-events", "LIKENESS_EVENTS", f"likeness.evt.character.*.{stream}", ack_wait_s=30)
    events = Consumer(spec, ignore_others=True)
    events.on(CharacterThresholdSet)(slow)
    bus.consume(events)
    await bus.start()
    event = threshold_event(stream)
    await nc.jetstream().publish(event_subject(event.type, stream), event.to_bytes(),
                                 headers={"Nats-Msg-Id": str(event.event_id)})
    await asyncio.wait_for(started.wait(), 10)
    await bus.stop()
    assert finished.is_set(), "stop() returned before the handler in flight finished"
    info = await nc.jetstream().consumer_info("LIKENESS_EVENTS", spec.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0
    await nc.jetstream().delete_consumer("LIKENESS_EVENTS", spec.durable)


async def consumed(bus: Bus, settings: RuntimeSettings, nc: nats.NATS, handler, *, ack_wait_s: float, workers: int = 1):
    """A consumer of one fresh stream's threshold events running `handler`, started, and one event published."""
    stream = new_stream()
    spec = ConsumerSpec(f"{bus._settings.service_name}-events", "LIKENESS_EVENTS",
                        f"likeness.evt.character.*.{stream}", ack_wait_s=ack_wait_s)
    events = Consumer(spec, ignore_others=True, workers=workers)
    events.on(CharacterThresholdSet)(handler)
    bus.consume(events)
    await bus.start()
    event = threshold_event(stream)
    await nc.jetstream().publish(event_subject(event.type, stream), event.to_bytes(),
                                 headers={"Nats-Msg-Id": str(event.event_id)})
    return spec


async def test_a_handler_slower_than_the_ack_wait_is_kept_in_progress_not_redelivered(
        settings: RuntimeSettings, nc: nats.NATS) -> None:
    bus = Bus(settings.model_copy(update={"service_name": f"slow{uuid.uuid4().hex[:8]}"}))
    calls: list[float] = []
    done = asyncio.Event()

    async def slow(_message, _envelope) -> None:
        calls.append(asyncio.get_running_loop().time())
        await asyncio.sleep(4.5)  # three ack waits
        done.set()

    spec = await consumed(bus, settings, nc, slow, ack_wait_s=1.5)
    try:
        await asyncio.wait_for(done.wait(), 20)
        await asyncio.sleep(2.0)  # a redelivery would have started by now
    finally:
        await bus.stop()
    assert len(calls) == 1
    info = await nc.jetstream().consumer_info("LIKENESS_EVENTS", spec.durable)
    assert info.delivered.consumer_seq == 1 and info.num_ack_pending == 0
    await nc.jetstream().delete_consumer("LIKENESS_EVENTS", spec.durable)


async def test_the_database_away_is_waited_out_never_counted_nor_dead_lettered(
        settings: RuntimeSettings, nc: nats.NATS) -> None:
    service = f"infra{uuid.uuid4().hex[:8]}"
    bus = Bus(settings.model_copy(update={"service_name": service}))  # max_deliver is 3
    calls = 0
    readiness: list[bool] = []
    done = asyncio.Event()

    async def flaky(_message, _envelope) -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:  # more failures than max_deliver allows a message of its own
            readiness.append(await bus.ready())
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        done.set()

    spec = await consumed(bus, settings, nc, flaky, ack_wait_s=2.0)
    try:
        await asyncio.wait_for(done.wait(), 60)
        await asyncio.sleep(0.5)
        assert await bus.ready() and bus.waiting == 0
    finally:
        await bus.stop()
    assert calls == 6
    # Not ready while it waited (the first failure is before the wait starts).
    assert readiness[1:] == [False] * 4
    info = await nc.jetstream().consumer_info("LIKENESS_EVENTS", spec.durable)
    assert info.delivered.consumer_seq == 1 and info.num_ack_pending == 0 and info.num_redelivered == 0
    assert await dead_letters(nc, service) == []
    await nc.jetstream().delete_consumer("LIKENESS_EVENTS", spec.durable)


async def test_data_the_database_refuses_is_dead_lettered_at_once(settings: RuntimeSettings, nc: nats.NATS) -> None:
    import asyncpg

    service = f"baddata{uuid.uuid4().hex[:8]}"
    bus = Bus(settings.model_copy(update={"service_name": service}))
    calls = 0

    async def refused(_message, _envelope) -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence")

    spec = await consumed(bus, settings, nc, refused, ack_wait_s=2.0)
    try:
        for _ in range(50):
            letters = await dead_letters(nc, service)
            if letters:
                break
            await asyncio.sleep(0.2)
    finally:
        await bus.stop()
    assert calls == 1
    (letter,) = letters
    assert "the database refused the message's data" in letter.headers["Likeness-Reason"]
    await nc.jetstream().delete_consumer("LIKENESS_EVENTS", spec.durable)


@pytest.mark.parametrize("workers", [1, 4])
async def test_a_consumer_start_jetstream_does_not_answer_is_tried_again_and_consumes_once(
    settings: RuntimeSettings, nc: nats.NATS, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """A NATS cluster electing leaders lets the subscribe's consumer-info request time out (seen in the
    3-node fault test): the service waits and tries again instead of exiting at start-up."""
    refusals = 2
    real_pull_subscribe = nats.js.JetStreamContext.pull_subscribe

    async def slow_cluster(self, *args, **kwargs):
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise nats.errors.TimeoutError
        return await real_pull_subscribe(self, *args, **kwargs)

    monkeypatch.setattr(nats.js.JetStreamContext, "pull_subscribe", slow_cluster)
    bus = Bus(settings.model_copy(update={"service_name": f"slowstart{uuid.uuid4().hex[:8]}"}))
    handled: list[CharacterThresholdSet] = []

    async def record(message, _envelope) -> None:
        handled.append(message)

    spec = await consumed(bus, settings, nc, record, ack_wait_s=30, workers=workers)
    try:
        async def until_handled() -> None:
            while not handled:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(until_handled(), 15)
        await asyncio.sleep(0.5)  # a second consume loop on the same queue would show as a second call
        subscriber = bus.broker.subscribers[0]
        assert refusals == 0
        assert len(handled) == 1
        # One pull loop (and with workers > 1 one in-memory queue server): the failed tries left nothing
        # running behind.
        running = [t.get_coro().__qualname__ for t in subscriber.tasks if not t.done()]
        assert running.count("PullStreamSubscriber._consume_pull") == 1
        assert len(running) == len(set(running))
    finally:
        await bus.stop()
    info = await nc.jetstream().consumer_info("LIKENESS_EVENTS", spec.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0
    await nc.jetstream().delete_consumer("LIKENESS_EVENTS", spec.durable)
