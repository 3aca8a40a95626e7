"""The Python client of the bot API (clients/python/likeness_client) against the real gateway over real NATS and
Postgres: every call it makes is an operation of /openapi.json with the fields it sends and reads, and its sync
and async clients generate, batch, wait, stream and download.

The client is not a package of this project (it is for bot authors): it is imported from its folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sys
import typing
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import Envelope, RenderProgress

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from likeness_client import (  # noqa: E402
    AsyncClient,
    ChainEvent,
    Client,
    Job,
    LikenessError,
    Progress,
)
from likeness_client.calls import ENDPOINTS  # noqa: E402

from tests.conftest import Backends  # noqa: E402
from tests.fakes.gateway_world import GatewayWorld  # noqa: E402
from tests.integration.bot_scripts import BotScript, Sent, record_batch_end, requests_sent  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url).start()
    yield world
    await world.close()


@pytest.fixture
async def api_key(world: GatewayWorld) -> str:
    async with world.client() as browser:
        return (await browser.post("/auth/signup")).json()["api_key"]


@pytest.fixture
async def sent(world: GatewayWorld) -> AsyncIterator[Sent]:
    async with requests_sent(world) as seen:
        yield seen


# -- checked against the OpenAPI document ------------------------------------------------------------------


def _resolve(document: dict, schema: dict) -> dict:
    """The object schema `schema` stands for: $ref followed, a nullable `anyOf` unwrapped, an array's items."""
    while True:
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in schema:
            schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
        elif schema.get("type") == "array":
            schema = schema["items"]
        else:
            return schema


def _nested(annotation: object) -> type | None:
    """The dataclass a field holds (itself, optional, or a tuple of them), if any."""
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    return next((found for arg in typing.get_args(annotation) if (found := _nested(arg)) is not None), None)


def _missing(document: dict, schema: dict, model: type, where: str) -> list[str]:
    """Fields the client reads that the schema does not promise, with nested types checked as well."""
    properties = _resolve(document, schema).get("properties", {})
    missing = []
    for name, annotation in typing.get_type_hints(model).items():
        if name not in properties:
            missing.append(f"{where}.{name}")
        elif (inner := _nested(annotation)) is not None:
            missing += _missing(document, properties[name], inner, f"{where}.{name}")
    return missing


async def test_every_call_of_the_client_is_in_the_openapi_document(world: GatewayWorld) -> None:
    async with world.client() as http:
        document = (await http.get("/openapi.json")).json()
    problems = []
    for endpoint in ENDPOINTS:
        operation = document["paths"].get(endpoint.path, {}).get(endpoint.method.lower())
        if operation is None:
            problems.append(f"{endpoint.method} {endpoint.path} is not an operation")
            continue
        if endpoint.sends:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            accepted = _resolve(document, body).get("properties", {})
            problems += [f"{endpoint.path} takes no {field!r}" for field in endpoint.sends if field not in accepted]
        if endpoint.answers is None and not endpoint.reads:
            continue
        ok = next(code for code in ("200", "201", "202") if code in operation["responses"])
        answer = operation["responses"][ok]["content"]["application/json"]["schema"]
        if endpoint.answers is not None:
            problems += _missing(document, answer, endpoint.answers, endpoint.path)
        properties = _resolve(document, answer).get("properties", {})
        problems += [f"{endpoint.path} answers no {field!r}" for field in endpoint.reads if field not in properties]
    assert problems == []


@dataclasses.dataclass
class _Inner:
    size: int


@dataclasses.dataclass
class _Outer:
    name: str
    inner: _Inner | None


def test_the_check_notices_a_field_the_server_does_not_answer() -> None:
    document = {"components": {"schemas": {"I": {"properties": {"width": {}}}}}}
    schema = {"properties": {"name": {}, "inner": {"anyOf": [{"$ref": "#/components/schemas/I"}, {"type": "null"}]}}}
    assert _missing(document, schema, _Outer, "x") == ["x.inner.size"]


# -- the blocking client ------------------------------------------------------------------------------------


async def test_the_client_generates_streams_waits_and_downloads(world: GatewayWorld, api_key: str,
                                                                sent: Sent) -> None:
    client = Client(world.url, api_key)
    # The gateway runs on this event loop: the blocking client runs in a thread.
    accepted = await asyncio.to_thread(client.generate, "a lighthouse at dawn --seed 3", nick="alice")
    assert accepted.nick == "alice" and accepted.character_id is None and accepted.queue_position is not None
    script = BotScript(world.store, world.blobs, request=await sent.of(accepted.job_id))

    events: list = []
    # Extended event by event, so the test sees how far the stream has come while it runs.
    streamed = asyncio.ensure_future(asyncio.to_thread(events.extend, client.stream(accepted.job_id)))
    waited = asyncio.ensure_future(asyncio.to_thread(client.wait, accepted.job_id, timeout=30))
    await script.advance(2)
    async with asyncio.timeout(10):
        # Live traffic reaches only a stream that is open: publish once this one has had the log's events.
        while len([e for e in events if isinstance(e, ChainEvent)]) < 2:
            await asyncio.sleep(0.02)
    await world.running.runtime.bus.nc.publish(
        f"likeness.live.render.progress.chain-{accepted.job_id}", _progress(accepted.job_id))
    await script.finish()
    job = await waited
    await streamed

    assert isinstance(job, Job) and job.done and job.status == "completed" and job.nick == "alice"
    assert job.result is not None and job.result.sha256 == script.images[-1].sha256 and not job.result.grid
    recorded = [e for e in events if isinstance(e, ChainEvent)]
    assert [e.type for e in recorded] == ["chain.requested", "chain.planned", "chain.step_requested",
                                          "chain.step_rendered", "chain.step_accepted", "chain.completed"]
    assert [e.seq for e in recorded] == [1, 2, 3, 4, 5, 6] and recorded[-1].terminal
    assert recorded[0].data["mode"] == "t2i"
    assert [(p.step, p.value, p.max) for p in events if isinstance(p, Progress)] == [(0, 3, 30)]

    picture = await asyncio.to_thread(client.download, job)
    assert hashlib.sha256(picture).hexdigest() == job.result.sha256
    # Resumed after the fourth event: only what came after it.
    again = await asyncio.to_thread(lambda: list(client.stream(accepted.job_id, last_event_id=4)))
    assert [e.seq for e in again if isinstance(e, ChainEvent)] == [5, 6]

    models = await asyncio.to_thread(client.models)
    assert {m.name: m.kind for m in models}["sdxl-base"] == "t2i"
    with pytest.raises(LikenessError) as refused:
        await asyncio.to_thread(client.generate, "a fox", nick="two words")
    assert (refused.value.status, refused.value.code) == (422, "invalid_request") and "nick" in refused.value.detail
    with pytest.raises(LikenessError) as hidden:
        await asyncio.to_thread(client.job, accepted.job_id, nick="bob")
    assert (hidden.value.status, hidden.value.code) == (404, "chain_not_found")
    client.close()


def _progress(chain_id: str) -> bytes:
    tick = RenderProgress(chain_id=uuid.UUID(chain_id), step=0, attempt=1, value=3, max=30)
    stream = f"chain-{chain_id}"
    return Envelope.wrap(tick, event_id=uuid.uuid4(), stream=stream, occurred_at=datetime.now(UTC),
                         correlation_id=stream, actor="renderer").to_bytes()


# -- the asyncio client --------------------------------------------------------------------------------------


async def test_the_async_client_sends_a_batch_and_waits_for_its_grid(world: GatewayWorld, api_key: str,
                                                                     sent: Sent) -> None:
    async with AsyncClient(world.url, api_key) as client:
        accepted = await client.batch(["a red kite", "a blue boat"], nick="carol")
        assert [j.request for j in accepted.jobs] == ["a red kite", "a blue boat"]
        scripts = [BotScript(world.store, world.blobs, request=await sent.of(j.job_id)) for j in accepted.jobs]
        waiting = asyncio.ensure_future(client.wait(accepted.batch_id, timeout=30))
        events = asyncio.ensure_future(_collect(client, accepted.jobs[1].job_id))
        for script in scripts:
            await script.finish()
        await record_batch_end(world, scripts[-1].chain_id)

        job = await waiting
        assert job.status == "completed" and job.batch_id == accepted.batch_id and job.result is not None
        assert job.result.grid and len(job.result.pictures) == 2
        grid = await client.download(job)
        assert hashlib.sha256(grid).hexdigest() == job.result.sha256
        second = await client.download(job.result.pictures[1])
        assert hashlib.sha256(second).hexdigest() == scripts[1].images[-1].sha256
        assert (await events)[-1].type == "chain.completed"

        status = await client.batch_status(accepted.batch_id, nick="carol")
        assert status.done and status.count == 2 and status.grid is not None
        assert [m.picture.sha256 for m in status.jobs if m.picture] == [s.images[-1].sha256 for s in scripts]
        with pytest.raises(LikenessError) as refused:
            await client.batch(["only one"])
        assert refused.value.status == 422


async def _collect(client: AsyncClient, job_id: str) -> list[ChainEvent]:
    return [event async for event in client.stream(job_id) if isinstance(event, ChainEvent)]


async def test_a_client_of_another_bot_sees_nothing(world: GatewayWorld, api_key: str) -> None:
    async with world.client() as browser:
        other_key = (await browser.post("/auth/signup")).json()["api_key"]
    async with AsyncClient(world.url, api_key) as mine, AsyncClient(world.url, other_key) as theirs:
        accepted = await mine.generate("a green hill", nick="dan")
        with pytest.raises(LikenessError) as hidden:
            await theirs.job(accepted.job_id)
        assert hidden.value.status == 404
        with pytest.raises(LikenessError):
            await theirs.download(accepted.job_id)
        assert (await mine.job(accepted.job_id, nick="dan")).status == "queued"
