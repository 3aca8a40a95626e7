"""The metrics an operator runs Likeness by, recorded by the real services over real NATS and Postgres.

A chain runs through the real planner, renderer (on the fake ComfyUI) and facecheck (dlib) in this process:
it is counted once by outcome although its request arrives twice, its face scores, render and face-check
times and the backend's busy time are recorded. The gateway's /metrics (scraped over HTTP) counts requests
per route template, leaves /metrics and probes out, and counts an SSE stream as open while it is.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from collections.abc import AsyncIterator, Callable

import httpx
import nats
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from contracts import ImageRef, PlannedStep, RenderCompleted, RequestChain
from contracts.streams import chain_stream
from contracts.subjects import COMMANDS_STREAM, command_subject
from services.facecheck.dlib_encoder import load_dlib
from services.facecheck.handlers import CONSUMER as FACECHECK_CONSUMER
from services.facecheck.service import build_runtime as facecheck_runtime
from services.facecheck.settings import FacecheckSettings
from services.planner.chain_writer import ChainService
from services.planner.saga.decide import PlanAccepted, StartChain
from services.planner.service import build_runtime as planner_runtime
from services.planner.service import consumers as planner_consumers
from services.planner.settings import PlannerSettings
from services.renderer.metrics import backend_label
from services.renderer.service import CONSUMER as RENDERER_CONSUMER
from services.renderer.service import build_runtime as renderer_runtime
from services.renderer.settings import RendererSettings
from services.runtime.blobs import BlobStore
from services.runtime.eventstore import EventStore
from services.runtime.llm import LlmClient, LlmEmptyAnswer, LlmSettings, LlmUnavailable
from services.runtime.settings import RuntimeSettings
from tests.conftest import Backends
from tests.faces import face_of
from tests.factories import wrap
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.gateway_world import GatewayWorld
from tests.fakes.openai_server import ErrorReply, FakeOpenAI, Reply
from tests.integration.gateway_helpers import sse_events
from tests.runtimes import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WAIT_S = 60.0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def until(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s:g}s: {what}") from None


@pytest.fixture
async def services(settings: RuntimeSettings) -> AsyncIterator[str]:
    """Planner, renderer and facecheck in this process on the test NATS and Postgres; yields the backend's url."""
    common = dict(nats_url=settings.nats_url, database_url=settings.database_url, environment="test",
                  ack_wait_s=10.0, retry_delay_s=0.2, max_deliver=3, graceful_timeout_s=5.0)
    planner = PlannerSettings(**common, workers=2)
    encoder = load_dlib()
    async with FakeComfyUI() as comfy:  # renders its input as it is: the reference's face, scored high
        async with (
            running(planner_runtime(planner)),
            running(renderer_runtime(RendererSettings(**common, comfyui_urls=(comfy.url,), render_timeout_s=30,
                                                      poll_interval_s=0.5, workers=1))),
            running(facecheck_runtime(FacecheckSettings(**common), encoder_factory=lambda _settings: encoder)),
        ):
            yield comfy.url
    nc = await nats.connect(settings.nats_url, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=5)
        for spec in planner_consumers(planner):
            await js.delete_consumer(spec.stream, spec.durable)
        for durable in (RENDERER_CONSUMER, FACECHECK_CONSUMER):
            await js.delete_consumer(COMMANDS_STREAM, durable)
    finally:
        await nc.drain()


async def settled(nc: nats.NATS, durable: str) -> None:
    """Until the planner's command consumer has handled everything sent to it so far."""
    async def drained() -> bool:
        info = await nc.jetstream().consumer_info(COMMANDS_STREAM, durable)
        return info.num_pending == 0 and info.num_ack_pending == 0

    async with asyncio.timeout(WAIT_S):
        while not await drained():
            await asyncio.sleep(0.05)


async def test_a_chain_is_counted_once_with_its_scores_durations_and_backend_time(
    services: str, nc: nats.NATS, settings: RuntimeSettings, store: EventStore
) -> None:
    backend = backend_label(services)
    before = {
        "started": sample("likeness_chains_total", outcome="started", reason=""),
        "completed": sample("likeness_chains_total", outcome="completed", reason=""),
        "scores": sample("likeness_face_score_count"),
        "accepted": sample("likeness_attempts_per_accepted_step_count", decision="threshold"),
        "renders": sample("likeness_step_attempt_seconds_count", phase="render", engine="comfyui"),
        "checks": sample("likeness_step_attempt_seconds_count", phase="face_check", engine="dlib/resnet_v1"),
        "busy": sample("likeness_backend_busy_seconds_total", backend=backend),
    }
    blobs = await BlobStore.open(nc.jetstream(timeout=5), settings=settings)
    reference: ImageRef = await blobs.put_image(face_of(2))
    chain_id = uuid.uuid4()
    request = wrap(RequestChain(chain_id=chain_id, character_id="luna", user_id="u1",
                                request_text="put her on a beach at sunset", reference_image=reference),
                   chain_stream(chain_id))
    js = nc.jetstream(timeout=5)
    for _ in range(2):  # the same request twice, as a redelivery brings it: one chain, counted once
        await js.publish(command_subject("chain.request"), request.to_bytes(), headers={"Nats-Msg-Id": str(uuid.uuid4())})

    await until(lambda: sample("likeness_chains_total", outcome="completed", reason="") > before["completed"],
                "the chain completed")
    await settled(nc, "planner-commands")
    types = [e.envelope.type for e in await store.read_stream(chain_stream(chain_id))]
    assert types[-1] == "chain.completed", types
    steps = types.count("chain.step_accepted")
    scored = types.count("chain.step_scored")

    assert sample("likeness_chains_total", outcome="started", reason="") == before["started"] + 1
    assert sample("likeness_chains_total", outcome="completed", reason="") == before["completed"] + 1
    assert sample("likeness_face_score_count") == before["scores"] + scored >= before["scores"] + 1
    assert sample("likeness_attempts_per_accepted_step_count", decision="threshold") == before["accepted"] + steps
    assert sample("likeness_face_score_bucket", le="100.0") == sample("likeness_face_score_count")
    assert sample("likeness_step_attempt_seconds_count", phase="render", engine="comfyui") >= before["renders"] + steps
    assert sample("likeness_step_attempt_seconds_count", phase="face_check",
                  engine="dlib/resnet_v1") >= before["checks"] + scored
    assert sample("likeness_backend_busy_seconds_total", backend=backend) > before["busy"]
    assert sample("likeness_backend_up", backend=backend) == 1.0
    assert sample("likeness_renderer_queue_depth") == 0.0


async def test_a_decision_another_replica_appended_first_is_not_counted_again(store: EventStore) -> None:
    """Two planner replicas handle the same result (a redelivery after the first one's ack was lost): the
    second, deciding on its cached state, finds the very same events in the log and counts nothing."""
    first, second = ChainService(store, lambda: datetime.now(UTC)), ChainService(store, lambda: datetime.now(UTC))
    chain_id = uuid.uuid4()
    stream = chain_stream(chain_id)
    request = RequestChain(chain_id=chain_id, user_id="u1", request_text="a red kite", mode="t2i")
    step = PlannedStep(index=0, kind="background", prompt="a red kite", width=512, height=512, seed=7, model="sdxl",
                       template="sdxl_t2i", steps=8, cfg=1.0)
    start = StartChain(request, PlanAccepted((step,), "rules"))
    await first.handle(chain_id, wrap(request, stream), lambda _state: _given(start))
    await second.load(stream)  # both replicas now hold the running chain in their caches
    done = RenderCompleted(chain_id=chain_id, step=0, attempt=1, workflow_hash="h", backend="b", engine="draft",
                           image=ImageRef(sha256="cd" * 32, media_type="image/png", width=512, height=512, bytes=9))
    cause = wrap(done, stream)
    before = sample("likeness_chains_total", outcome="completed", reason="")
    decided = await first.handle(chain_id, cause, lambda _state: _given(done))
    again = await second.handle(chain_id, cause, lambda _state: _given(done))
    assert [e.type for e in decided.events] == [e.type for e in again.events]
    assert "chain.completed" in [e.type for e in again.events]
    assert sample("likeness_chains_total", outcome="completed", reason="") == before + 1


async def _given(trigger):
    return trigger


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_sse_heartbeat_s=0.5,
                               gateway_anonymous_image_limit=None).start()
    yield world
    await world.close()


async def scrape(world: GatewayWorld) -> dict[tuple[str, frozenset], float]:
    """The gateway's /metrics over HTTP, as {(sample name, labels): value}."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{world.url}/metrics")
    assert response.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_gateway_http_metrics_are_per_route_template_and_leave_probes_out(world: GatewayWorld) -> None:
    route = dict(method="GET", status="2xx", handler="/chains/{chain_id}")
    before = value(await scrape(world), "likeness_http_requests_total", **route)
    async with world.client() as client:
        response = await client.post("/characters/upload-image", files={"image": ("f.png", face_of(0))},
                                     data={"name": "Mia", "gender": "woman"})
        assert response.status_code == 201, response.text
        character = response.json()
        me = (await client.get("/me")).json()
        script = world.chain(user_id=me["user_id"], character_id=character["id"],
                             reference=ImageRef.model_validate(character["reference"]), steps=1)
        await script.finish()
        assert (await client.get(f"/chains/{script.chain_id}")).status_code == 200
        assert (await client.get(f"/chains/{uuid.uuid4()}")).status_code == 404
        await client.get("/healthz")
    samples = await scrape(world)
    assert value(samples, "likeness_http_requests_total", **route) == before + 1
    assert value(samples, "likeness_http_requests_total", **{**route, "status": "4xx"}) >= 1
    handlers = {dict(labels).get("handler") for (name, labels) in samples if name == "likeness_http_requests_total"}
    assert not {"/metrics", "/healthz", "/readyz"} & handlers
    assert not any(h and str(script.chain_id) in h for h in handlers), "raw paths never become labels"


async def test_an_open_sse_stream_counts_while_open_and_its_duration_is_the_time_to_its_first_byte(
    world: GatewayWorld
) -> None:
    async with world.client() as client:
        response = await client.post("/characters/upload-image", files={"image": ("f.png", face_of(1))},
                                     data={"name": "Ada", "gender": "woman"})
        character = response.json()
        me = (await client.get("/me")).json()
        script = world.chain(user_id=me["user_id"], character_id=character["id"],
                             reference=ImageRef.model_validate(character["reference"]), steps=1)
        await script.advance(2)
        route = dict(method="GET", handler="/chains/{chain_id}/events")
        first = await scrape(world)
        open_before = value(first, "likeness_sse_clients", stream="chain")
        async with client.stream("GET", f"/chains/{script.chain_id}/events") as stream:
            opened = time.monotonic()
            events = sse_events(stream.aiter_lines())
            assert (await anext(events)).event == "chain.requested"
            assert value(await scrape(world), "likeness_sse_clients", stream="chain") == open_before + 1
            await asyncio.sleep(1.0)  # open a while, heartbeats flowing
            await script.finish()
            async for event in events:
                if event.event == "chain.completed":
                    break
            async for _rest in events:
                pass
            lived = time.monotonic() - opened
    await until_scraped(world, lambda s: value(s, "likeness_sse_clients", stream="chain") == open_before)
    last = await scrape(world)
    assert value(last, "likeness_http_requests_total", **route, status="2xx") == value(
        first, "likeness_http_requests_total", **route, status="2xx") + 1
    took = value(last, "likeness_http_request_duration_seconds_sum", **route) - value(
        first, "likeness_http_request_duration_seconds_sum", **route)
    # Recorded as the time to the response's start, not the stream's whole life (which held a 1 s sleep).
    assert 0 < took < lived


async def until_scraped(world: GatewayWorld, check: Callable[[dict], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check(await scrape(world)):
            await asyncio.sleep(0.05)


async def test_llm_calls_are_counted_by_outcome_and_timed() -> None:
    labels = dict(purpose="plan", model="metrics-model")
    before = {outcome: sample("likeness_llm_requests_total", **labels, outcome=outcome)
              for outcome in ("ok", "unavailable", "empty")}
    timed = sample("likeness_llm_request_seconds_count", **labels)
    with FakeOpenAI([Reply("a plan"), ErrorReply(503, "overloaded"), Reply("")], model="metrics-model") as server:
        client = LlmClient(LlmSettings(base_url=server.url, model="metrics-model", timeout_s=10), purpose="plan")
        try:
            assert (await client.complete([{"role": "user", "content": "plan"}])).text == "a plan"
            with pytest.raises(LlmUnavailable):
                await client.complete([{"role": "user", "content": "plan"}])
            with pytest.raises(LlmEmptyAnswer):
                await client.stream([{"role": "user", "content": "plan"}], _ignore)
        finally:
            await client.aclose()
    for outcome in before:
        assert sample("likeness_llm_requests_total", **labels, outcome=outcome) == before[outcome] + 1, outcome
    assert sample("likeness_llm_request_seconds_count", **labels) == timed + 3


async def _ignore(_delta: str) -> None:
    return None
