"""The planner on real NATS JetStream + Postgres: a command the renderer or facecheck dead-letters
ends its chain's attempt, instead of leaving the chain waiting in "running" forever.

Nobody runs the renderer or facecheck here: the test takes the planner's commands off the work queue
itself and plays the service that gives up, publishing them as that service's dead letters.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from contracts import REGISTRY, Envelope, ImageRef, RenderCompleted, RenderFailed, RenderStep, RequestChain, ScoreFace
from contracts.streams import chain_stream
from contracts.subjects import COMMANDS_STREAM, DEAD_LETTERS_STREAM, command_subject, dead_letter_subject, event_subject
from services.planner.service import build_runtime, consumers
from services.planner.settings import PlannerSettings
from services.runtime.eventstore import EventStore
from services.runtime.delivery import DeadLetter
from services.runtime.ids import derived_id
from services.runtime.settings import RuntimeSettings
from tests.factories import threshold_event, wrap
from tests.runtimes import running

pytestmark = pytest.mark.integration

REFERENCE = ImageRef(sha256="ef" * 32, media_type="image/png", width=512, height=512, bytes=4321)
RENDERED = ImageRef(sha256="12" * 32, media_type="image/png", width=512, height=512, bytes=5678)
WAIT_S = 20.0


@pytest.fixture(scope="module")
async def planner(settings: RuntimeSettings) -> AsyncIterator[PlannerSettings]:
    """The planner service in-process; its durable consumers are removed after the module."""
    config = PlannerSettings(nats_url=settings.nats_url, database_url=settings.database_url, environment="test",
                             ack_wait_s=2.0, retry_delay_s=0.2, max_deliver=3, graceful_timeout_s=5.0, workers=2)
    async with running(build_runtime(config)):
        yield config
    nc = await nats.connect(settings.nats_url, connect_timeout=5)
    try:
        for spec in consumers(config):
            await nc.jetstream().delete_consumer(spec.stream, spec.durable)
    finally:
        await nc.drain()


class Commands:
    """Takes the planner's commands of one type off the work queue, as the service that runs them would."""

    def __init__(self, nc: nats.NATS, type_: str) -> None:
        self._nc, self._subject = nc, command_subject(type_)
        self._sub = None

    async def __aenter__(self) -> Commands:
        self._sub = await self._nc.jetstream().pull_subscribe(self._subject, durable=None, stream=COMMANDS_STREAM)
        return self

    async def __aexit__(self, *_exc) -> None:
        # Removed at once: a work-queue stream takes one consumer per subject, and the next test needs it.
        name = (await self._sub.consumer_info()).name
        await self._sub.unsubscribe()
        await self._nc.jetstream().delete_consumer(COMMANDS_STREAM, name)

    async def next_for(self, chain_id: uuid.UUID) -> Envelope:
        """The next command for this chain; leftovers of other tests are taken off the queue too."""
        async def take() -> Envelope:
            while True:
                try:
                    msgs = await self._sub.fetch(1, timeout=1.0)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    continue
                for msg in msgs:
                    await msg.ack()
                    envelope = Envelope.from_bytes(msg.data)
                    if envelope.stream == chain_stream(chain_id):
                        return envelope

        return await asyncio.wait_for(take(), WAIT_S)


async def request_chain(nc: nats.NATS) -> uuid.UUID:
    chain_id = uuid.uuid4()
    request = wrap(RequestChain(chain_id=chain_id, character_id="luna", user_id="u1",
                                request_text="put her on a beach at sunset", reference_image=REFERENCE),
                   chain_stream(chain_id))
    await nc.jetstream().publish(command_subject("chain.request"), request.to_bytes(),
                                 headers={"Nats-Msg-Id": str(request.event_id)})
    return chain_id


async def answer(nc: nats.NATS, command: Envelope, result: RenderFailed | RenderCompleted) -> None:
    """Publish the result the service would publish for `command`."""
    envelope = wrap(result, command.stream, event_id=derived_id(command.event_id, "result"),
                    causation_id=str(command.event_id))
    await nc.jetstream().publish(event_subject(envelope.type, envelope.stream), envelope.to_bytes(),
                                 headers={"Nats-Msg-Id": str(envelope.event_id)})


async def give_up(nc: nats.NATS, service: str, command: Envelope, reason: str) -> None:
    """Dead-letter `command` as `service`'s bus does (a fresh message id: a second letter, not a republish)."""
    letter = DeadLetter(data=command.to_bytes(), reason=reason, original_subject=command_subject(command.type),
                        consumer=service, deliveries=3)
    await nc.jetstream().publish(dead_letter_subject(service), letter.data, stream=DEAD_LETTERS_STREAM,
                                 headers={**letter.headers(), "Nats-Msg-Id": str(uuid.uuid4())})


async def settled(nc: nats.NATS, service: str) -> None:
    """Until the planner has handled (acked) every dead letter of `service` so far."""
    durable = f"planner-dead-letters-{service}"

    async def drained() -> None:
        while True:
            info = await nc.jetstream().consumer_info(DEAD_LETTERS_STREAM, durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(drained(), WAIT_S)


async def planner_dead_letters(nc: nats.NATS) -> int:
    subject = dead_letter_subject("planner")
    info = await nc.jetstream().stream_info(DEAD_LETTERS_STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def chain_types(store: EventStore, chain_id: uuid.UUID) -> list[str]:
    return [e.envelope.type.removeprefix("chain.") for e in await store.read_stream(chain_stream(chain_id))]


async def until_ends(store: EventStore, chain_id: uuid.UUID) -> list[str]:
    async def ended() -> list[str]:
        while (types := await chain_types(store, chain_id))[-1:] not in (["failed"], ["completed"]):
            await asyncio.sleep(0.05)
        return types

    return await asyncio.wait_for(ended(), WAIT_S)


async def test_a_dead_lettered_render_step_fails_its_chain_once_and_stale_letters_change_nothing(
    planner: PlannerSettings, nc: nats.NATS, store: EventStore
) -> None:
    async with Commands(nc, "render.step") as renders:
        chain_id = await request_chain(nc)
        first = await renders.next_for(chain_id)
        step = first.open(REGISTRY)
        assert isinstance(step, RenderStep) and step.attempt == 1
        # A backend was down: the saga retries with attempt 2, which nobody answers either.
        await answer(nc, first, RenderFailed(chain_id=chain_id, step=step.step, attempt=1,
                                             reason="no backend answered", error_kind="unreachable"))
        second = await renders.next_for(chain_id)
        assert second.open(REGISTRY).attempt == 2

    running = await chain_types(store, chain_id)
    # The renderer giving up on attempt 1 now is stale: attempt 2 is the one in flight.
    await give_up(nc, "renderer", first, "failed 3 times, last: ConnectionResetError")
    await settled(nc, "renderer")
    assert await chain_types(store, chain_id) == running

    await give_up(nc, "renderer", second, "failed 3 times, last: ObjectStoreTimeout")
    types = await until_ends(store, chain_id)
    assert types == [*running, "step_failed", "failed"]
    recorded = await store.read_stream(chain_stream(chain_id))
    step_failed, failed = (e.envelope.open(REGISTRY) for e in recorded[-2:])
    assert (step_failed.attempt, step_failed.stage) == (2, "render")
    assert failed.reason == ("render internal: the renderer gave up on this step: "
                             "failed 3 times, last: ObjectStoreTimeout")
    assert recorded[-1].envelope.causation_id == str(derived_id(second.event_id, "dead-letter"))

    # The same command dead-lettered again (another delivery of it, another replica) changes nothing.
    await give_up(nc, "renderer", second, "failed 3 times, last: ObjectStoreTimeout")
    await settled(nc, "renderer")
    assert await chain_types(store, chain_id) == types


async def test_a_dead_lettered_score_face_fails_its_chain_at_the_face_check(
    planner: PlannerSettings, nc: nats.NATS, store: EventStore
) -> None:
    async with Commands(nc, "render.step") as renders, Commands(nc, "face.score") as scores:
        chain_id = await request_chain(nc)
        render = await renders.next_for(chain_id)
        step = render.open(REGISTRY)
        await answer(nc, render, RenderCompleted(chain_id=chain_id, step=step.step, attempt=step.attempt,
                                                 image=RENDERED, workflow_hash="h", backend="b", engine="draft"))
        score = await scores.next_for(chain_id)
        assert isinstance(score.open(REGISTRY), ScoreFace)

    await give_up(nc, "facecheck", score, "delivered 4 times without an answer (crash or timeout)")
    types = await until_ends(store, chain_id)
    assert types[-3:] == ["step_rendered", "step_failed", "failed"]
    failed = (await store.read_stream(chain_stream(chain_id)))[-1].envelope.open(REGISTRY)
    assert failed.reason == ("face check failed: the face check gave up on this image: "
                             "delivered 4 times without an answer (crash or timeout)")


async def test_dead_letters_the_planner_cannot_use_are_acked_and_never_dead_lettered_again(
    planner: PlannerSettings, nc: nats.NATS
) -> None:
    before = await planner_dead_letters(nc)
    other = threshold_event("character-luna")
    for data in (b'{"event_id": "not json', other.to_bytes()):
        letter = DeadLetter(data=data, reason="not a Likeness envelope", original_subject="likeness.cmd.render.step",
                            consumer="renderer", deliveries=1)
        await nc.jetstream().publish(dead_letter_subject("renderer"), data, stream=DEAD_LETTERS_STREAM,
                                     headers={**letter.headers(), "Nats-Msg-Id": str(uuid.uuid4())})
    await settled(nc, "renderer")
    assert await planner_dead_letters(nc) == before


async def test_a_chain_request_the_planner_gave_up_on_is_refused_with_the_reason(
        planner: PlannerSettings, nc: nats.NATS, store: EventStore) -> None:
    chain_id = uuid.uuid4()
    request = wrap(RequestChain(chain_id=chain_id, character_id="luna", user_id="u1",
                                request_text="put her on a beach at sunset", reference_image=REFERENCE),
                   chain_stream(chain_id))
    # As the planner's bus does when the request's handler failed on every delivery (never published as a command).
    await give_up(nc, "planner", request, "failed 3 times, last: KeyError: 'luna'")
    await give_up(nc, "planner", request, "failed 3 times, last: KeyError: 'luna'")  # a second letter: no change

    async def refused() -> list:
        while len(recorded := await store.read_stream(chain_stream(chain_id))) < 2:
            await asyncio.sleep(0.2)
        return recorded

    recorded = await asyncio.wait_for(refused(), WAIT_S)
    await asyncio.sleep(1.0)
    recorded = await store.read_stream(chain_stream(chain_id))
    assert [r.envelope.type for r in recorded] == ["chain.requested", "chain.refused"]
    refusal = recorded[1].envelope.open(REGISTRY)
    assert refusal.rule == "planner.dead_letter" and "KeyError: 'luna'" in refusal.reason
