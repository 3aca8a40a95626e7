"""Chains through the gateway over real NATS and Postgres: the SSE stream of a chain (order, ids, live
progress and previews, heartbeats, resumption with Last-Event-ID exactly once), chain state and
audit, re-render, compare, branch, the edit tree, ownership, the one-subscription live hub, the
projector's rebuild, and a shutdown with streams open.

Chain events are written into the log by `ChainScript` (as the planner would) and reach NATS
through a real outbox relay, exactly the way the planner's events do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image

from contracts import REGISTRY, Envelope, ImageRef, RenderPreview, RenderProgress
from contracts.subjects import command_subject, live_subject
from services.gateway.live import FAMILIES
from tests.fakes.gateway_world import ChainScript, GatewayWorld
from tests.conftest import Backends
from tests.faces import face_of
from tests.integration.gateway_helpers import Sse, assert_error, sse_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TERMINAL = {"chain.completed", "chain.failed", "chain.refused", "chain.cancelled"}


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_sse_heartbeat_s=0.5,
                               gateway_anonymous_image_limit=None).start()
    yield world
    await world.close()


@dataclass
class Person:
    client: httpx.AsyncClient
    user_id: str
    character_id: str
    reference: ImageRef


@pytest.fixture
async def maker(world: GatewayWorld, alice: httpx.AsyncClient) -> Person:
    response = await alice.post("/characters/upload-image", files={"image": ("f.png", face_of(0))},
                                data={"name": "Mia", "gender": "woman"})
    assert response.status_code == 201, response.text
    character = response.json()
    me = (await alice.get("/me")).json()
    return Person(alice, me["user_id"], character["id"], ImageRef.model_validate(character["reference"]))


def script_for(world: GatewayWorld, person: Person, **options) -> ChainScript:
    return world.chain(user_id=person.user_id, character_id=person.character_id, reference=person.reference,
                       **options)


async def chain_requests_seen(world: GatewayWorld):
    """Every RequestChain the gateway sends from now on (the list fills while the subscription lives)."""
    seen: list[Envelope] = []

    async def on(msg) -> None:
        seen.append(Envelope.from_bytes(msg.data))

    return seen, await world.nc.subscribe(command_subject("chain.request"), cb=on)


class Stream:
    """An open SSE response, read event by event (comments counted apart)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.pings = 0
        self.ended = False
        self.events = sse_events(response.aiter_lines(), on_comment=self._ping)

    def _ping(self, _comment: str) -> None:
        self.pings += 1

    async def next(self, timeout: float = 10.0) -> Sse:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Sse:
        async for event in self.events:
            return event
        self.ended = True
        raise EOFError("the stream ended")

    async def persisted(self, count: int, timeout: float = 10.0) -> list[Sse]:
        """The next `count` events that carry an id (live-only events skipped)."""
        found = []
        while len(found) < count:
            event = await self.next(timeout)
            if event.id is not None:
                found.append(event)
        return found

    async def rest(self, timeout: float = 10.0) -> list[Sse]:
        """Every event until the server closes the stream."""
        found = []
        while True:
            try:
                found.append(await self.next(timeout))
            except EOFError:
                return found


@pytest.fixture
async def open_stream():
    opened: list = []

    async def open_(client: httpx.AsyncClient, chain_id, *, last: int | None = None, query: int | None = None) -> Stream:
        headers = {"Last-Event-ID": str(last)} if last is not None else {}
        params = {"last_event_id": query} if query is not None else {}
        context = client.stream("GET", f"/chains/{chain_id}/events", headers=headers, params=params)
        response = await context.__aenter__()
        opened.append(context)
        assert response.status_code == 200, await response.aread()
        return Stream(response)

    yield open_
    for context in opened:
        await context.__aexit__(None, None, None)


# -- the event stream -------------------------------------------------------------------------------


async def test_the_stream_of_a_finished_chain_is_its_log_in_order_then_it_closes(world, maker, open_stream) -> None:
    script = script_for(world, maker, steps=2)
    total = await script.finish()
    stream = await open_stream(maker.client, script.chain_id)
    assert stream.response.headers["x-accel-buffering"] == "no"
    assert stream.response.headers["cache-control"].startswith("no-cache")
    events = await stream.rest()
    assert [e.id for e in events] == list(range(1, total + 1))
    assert events[0].event == "chain.requested" and events[-1].event == "chain.completed"
    recorded = await world.store.read_stream(script.stream)
    for event, row in zip(events, recorded, strict=True):
        envelope = Envelope.model_validate(event.json())
        assert event.event == envelope.type == row.envelope.type
        assert envelope.seq == event.id and envelope.event_id == row.envelope.event_id
        assert envelope.data == row.envelope.data and envelope.stream == script.stream


async def test_live_events_progress_previews_and_pings_arrive_while_the_chain_runs(world, maker,
                                                                                    open_stream) -> None:
    script = script_for(world, maker, steps=1)
    await script.advance(2)
    stream = await open_stream(maker.client, script.chain_id)
    assert [e.event for e in await stream.persisted(2)] == ["chain.requested", "chain.planned"]
    await script.advance(1)
    assert (await stream.next()).event == "chain.step_requested"

    await asyncio.sleep(1.2)  # idle: heartbeats are sent (and read before what follows)

    progress = RenderProgress(chain_id=script.chain_id, step=0, attempt=1, value=3, max=8, queue_position=2)
    frame = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 0, 0)).save(frame, format="JPEG")
    preview = RenderPreview(chain_id=script.chain_id, step=0, attempt=1, media_type="image/jpeg",
                            data_base64=base64.b64encode(frame.getvalue()).decode())
    for message in (progress, preview):
        envelope = Envelope.wrap(message, event_id=uuid.uuid4(), stream=script.stream,
                                 occurred_at=progress_time(), correlation_id=script.stream)
        await world.nc.publish(live_subject(message.type, script.stream), envelope.to_bytes())
    got = [await stream.next(), await stream.next(), await stream.next()]
    assert stream.pings >= 1
    assert [(e.event, e.id) for e in got] == [("progress", None), ("queue", None), ("preview", None)]
    assert got[0].json() | {"chain_id": None} == {"chain_id": None, "step": 0, "attempt": 1, "value": 3, "max": 8,
                                                  "node": None, "queue_position": 2}
    assert got[1].json() == {"position": 2, "step": 0, "attempt": 1}
    assert got[2].json()["data_url"] == "data:image/jpeg;base64," + preview.data_base64

    await script.finish()
    rest = await stream.rest()
    assert [e.event for e in rest] == ["chain.step_rendered", "chain.step_scored", "chain.step_accepted",
                                       "chain.completed"]
    assert [e.id for e in rest] == [4, 5, 6, 7]


def progress_time():
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_resuming_after_missed_events_sends_each_later_one_exactly_once(world, maker, open_stream) -> None:
    script = script_for(world, maker, steps=3)
    await script.advance(4)
    first = await open_stream(maker.client, script.chain_id)
    seen = await first.persisted(4)
    k = seen[-1].id
    await first.response.aclose()  # the client goes away after event k ...
    await script.advance(5)  # ... and misses these

    again = await open_stream(maker.client, script.chain_id, last=k)
    missed = await again.persisted(5)
    assert [e.id for e in missed] == list(range(k + 1, k + 6))
    await script.finish()
    rest = [e for e in await again.rest() if e.id is not None]
    ids = [e.id for e in missed + rest]
    assert ids == list(range(k + 1, script.version + 1))  # each once, in order, to the end
    assert rest[-1].event == "chain.completed"


async def test_resuming_at_the_head_gets_the_later_events_exactly_once(world, maker, open_stream) -> None:
    script = script_for(world, maker, steps=2)
    k = await script.advance(3)
    stream = await open_stream(maker.client, script.chain_id, last=k)
    await asyncio.sleep(0.2)
    await script.finish()
    events = [e for e in await stream.rest() if e.id is not None]
    assert [e.id for e in events] == list(range(k + 1, script.version + 1))

    by_query = await open_stream(maker.client, script.chain_id, query=script.version - 2)
    assert [e.id for e in await by_query.rest()] == [script.version - 1, script.version]
    after_the_end = await open_stream(maker.client, script.chain_id, last=script.version)
    assert await after_the_end.rest() == []


async def test_events_whose_live_copy_was_lost_or_doubled_still_arrive_once(world, maker, open_stream) -> None:
    script = script_for(world, maker, steps=2)
    await script.advance(2)
    stream = await open_stream(maker.client, script.chain_id)
    await stream.persisted(2)
    await world.relay.stop()  # nothing reaches NATS now: the stream must find the events in the log
    try:
        await script.advance(3)
        caught_up = await stream.persisted(3, timeout=5)
        assert [e.id for e in caught_up] == [3, 4, 5]
    finally:
        # The restarted relay publishes them again (their live copies arrive late, as duplicates).
        world.relay = type(world.relay)(world.database_url, world.nc.jetstream(timeout=5), world.store).start()
    await script.finish()
    rest = [e.id for e in await stream.rest() if e.id is not None]
    assert rest == list(range(6, script.version + 1))


async def test_a_thousand_listeners_share_one_subscription_per_family(world, maker) -> None:
    hub = world.gateway.hub
    script = script_for(world, maker, steps=1)
    await script.advance(1)
    subscriptions = len(world.gateway.runtime.bus.nc._subs)
    async with httpx.AsyncClient(base_url=world.url, timeout=30, cookies=maker.client.cookies,
                                 limits=httpx.Limits(max_connections=60)) as client:
        contexts = [client.stream("GET", f"/chains/{script.chain_id}/events") for _ in range(50)]
        streams = [Stream(await c.__aenter__()) for c in contexts]
        for stream in streams:
            assert (await stream.next()).id == 1
        assert hub.listeners(script.stream) == 50
        assert len(world.gateway.runtime.bus.nc._subs) == subscriptions
        assert len(hub._subscriptions) == len(FAMILIES)
        await script.finish()
        for stream in streams:
            assert [e.id for e in await stream.rest() if e.id] == list(range(2, script.version + 1))
        for context in contexts:
            await context.__aexit__(None, None, None)
    await asyncio.sleep(0.2)
    assert hub.listeners(script.stream) == 0


# -- chain state, audit, ownership --------------------------------------------------------------------


async def test_chain_state_and_audit_belong_to_the_owner_only(world, maker, bob, open_stream) -> None:
    script = script_for(world, maker, steps=2)
    await script.finish()
    chain = (await maker.client.get(f"/chains/{script.chain_id}")).json()
    assert chain["status"] == "completed" and chain["character_id"] == maker.character_id
    assert [s["state"] for s in chain["steps"]] == ["accepted", "accepted"]
    assert chain["final_image"]["sha256"] == script.images[-1].sha256
    assert chain["steps"][0]["attempts"][0]["seed"] == 1234 and chain["steps"][1]["seed"] == 1235
    audit = (await maker.client.get(f"/chains/{script.chain_id}/audit")).json()
    assert audit["status"] == "completed" and audit["final_image"]["sha256"] == script.images[-1].sha256
    assert audit["steps"][0]["attempts"][0]["decision"] == "accepted"
    assert audit["request"]["user_id"] == maker.user_id

    cid = script.chain_id
    for method, path, body in [("GET", f"/chains/{cid}", None), ("GET", f"/chains/{cid}/events", None),
                               ("GET", f"/chains/{cid}/audit", None), ("POST", f"/chains/{cid}/rerender", None),
                               ("POST", f"/chains/{cid}/branch", {"from_step": 0, "request": "x"}),
                               ("POST", f"/chains/{cid}/cancel", None), ("GET", f"/chat/job/{cid}", None),
                               ("GET", f"/images/{script.images[0].sha256}", None)]:
        response = await bob.request(method, path, json=body)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"] in ("chain_not_found", "image_not_found")
    compare = await bob.get(f"/chains/{uuid.uuid4()}/compare", params={"with": str(cid)})
    assert compare.status_code == 404
    assert (await bob.get(f"/chains/{uuid.uuid4()}")).status_code == 404


# -- re-render, compare, branch, tree ------------------------------------------------------------------


async def test_a_rerender_pins_the_seed_and_compares_step_by_step(world, maker) -> None:
    seen, sub = await chain_requests_seen(world)
    original = script_for(world, maker, steps=2, request_text="at the beach --seed 5 -w 512", seed=777)
    await original.finish()
    response = await maker.client.post(f"/chains/{original.chain_id}/rerender")
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["source_chain_id"] == str(original.chain_id) and "--seed 777" in started["note"]
    await asyncio.sleep(0.2)
    await sub.unsubscribe()
    request = next(e for e in seen if e.data["chain_id"] == started["chain_id"]).open(REGISTRY)
    assert request.request_text == "at the beach -w 512 --seed 777"
    assert request.reference_image == maker.reference and request.character_id == maker.character_id

    again = script_for(world, maker, steps=2, chain_id=uuid.UUID(started["chain_id"]), seed=777)
    await again.finish()
    compared = (await maker.client.get(f"/chains/{again.chain_id}/compare",
                                       params={"with": str(original.chain_id)})).json()
    assert compared["status"] == ["completed", "completed"]
    assert [s["same_seed"] for s in compared["steps"]] == [True, True]
    for step in compared["steps"]:
        assert len(step["this"]["dhash"]) == 16 and isinstance(step["hash_distance"], int)
        assert step["this"]["sha256"] != step["other"]["sha256"] and step["score_delta"] == 0.0


async def test_regenerate_is_the_same_request_and_input_with_new_seeds(world, maker) -> None:
    seen, sub = await chain_requests_seen(world)
    original = script_for(world, maker, steps=2, request_text="at the beach --seed 5 -w 512", seed=777)
    await original.finish()
    response = await maker.client.post(f"/chains/{original.chain_id}/rerender", params={"fresh_seed": "true"})
    assert response.status_code == 202, response.text
    assert response.json()["note"] == "the same request with new seeds"
    await asyncio.sleep(0.2)
    await sub.unsubscribe()
    again = next(e for e in seen if e.data["chain_id"] == response.json()["chain_id"]).open(REGISTRY)
    assert again.request_text == "at the beach -w 512"
    assert again.reference_image == maker.reference and again.character_id == maker.character_id


async def test_a_branch_edits_the_accepted_image_of_its_step_and_hangs_under_its_parent(world, maker) -> None:
    seen, sub = await chain_requests_seen(world)
    parent = script_for(world, maker, steps=3)
    await parent.finish()
    response = await maker.client.post(f"/chains/{parent.chain_id}/branch",
                                       json={"from_step": 1, "request": "now in the rain"})
    assert response.status_code == 202, response.text
    child_id = uuid.UUID(response.json()["chain_id"])
    await asyncio.sleep(0.2)
    await sub.unsubscribe()
    request = next(e for e in seen if e.data["chain_id"] == str(child_id)).open(REGISTRY)
    assert request.parent_chain_id == parent.chain_id and request.branch_from_step == 1
    assert request.input_image == parent.images[1] and request.request_text == "now in the rain"

    assert (await maker.client.post(f"/chains/{parent.chain_id}/branch",
                                    json={"from_step": 3, "request": "x"})).json()["error"] == "invalid_step"
    failed = script_for(world, maker, steps=2, fail_at=1)
    await failed.finish()
    refused = await maker.client.post(f"/chains/{failed.chain_id}/branch", json={"from_step": 1, "request": "x"})
    assert refused.status_code == 409 and refused.json()["error"] == "step_not_accepted"
    assert (await maker.client.post(f"/chains/{failed.chain_id}/branch",
                                    json={"from_step": -1, "request": "x"})).status_code == 422

    child = script_for(world, maker, steps=1, chain_id=child_id, parent_chain_id=parent.chain_id,
                       branch_from_step=1)
    await child.finish()
    tree = (await maker.client.get("/me/tree")).json()["chains"]
    node = next(n for n in tree if n["chain_id"] == str(parent.chain_id))
    assert [b["chain_id"] for b in node["branches"]] == [str(child_id)]
    assert node["branches"][0]["branch_from_step"] == 1
    assert node["score"] == 78.0 and [s["score"] for s in node["steps"]] == [80.0, 79.0, 78.0]
    assert str(child_id) not in {n["chain_id"] for n in tree}
    failed_node = next(n for n in tree if n["chain_id"] == str(failed.chain_id))
    assert failed_node["status"] == "failed" and failed_node["steps"][1]["state"] == "failed"


async def test_the_views_rebuild_from_the_log_to_the_same_rows(world, maker) -> None:
    script = script_for(world, maker, steps=2)
    await script.finish()
    projector = world.gateway.projector
    await projector.sync()
    query = ("SELECT chain_id, user_id, status, steps::text, final_sha256, version FROM chains_view "
             "WHERE user_id = $1 ORDER BY chain_id")
    images = "SELECT chain_id, role, step, attempt, sha256 FROM images_view WHERE user_id = $1 ORDER BY 1, 2, 3, 4"
    before = ([tuple(r) for r in await world.gateway.db.fetch(query, maker.user_id)],
              [tuple(r) for r in await world.gateway.db.fetch(images, maker.user_id)])
    await projector.rebuild()
    assert await world.gateway.db.fetch(query, maker.user_id) == []
    while await projector.run_once():
        pass
    after = ([tuple(r) for r in await world.gateway.db.fetch(query, maker.user_id)],
             [tuple(r) for r in await world.gateway.db.fetch(images, maker.user_id)])
    assert after == before and before[0]


async def test_shutdown_ends_open_streams(backends: Backends) -> None:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_sse_heartbeat_s=30).start()
    try:
        async with world.client() as client:
            response = await client.post("/characters/upload-image", files={"image": ("f.png", face_of(1))},
                                         data={"name": "Zed"})
            character = response.json()
            me = (await client.get("/me")).json()
            script = world.chain(user_id=me["user_id"], character_id=character["id"],
                                 reference=ImageRef.model_validate(character["reference"]), steps=1)
            await script.advance(2)
            async with client.stream("GET", f"/chains/{script.chain_id}/events") as response:
                stream = Stream(response)
                await stream.persisted(2)
                started = asyncio.get_running_loop().time()
                await world.running.stop()
                assert await stream.rest(timeout=15) == []
                assert asyncio.get_running_loop().time() - started < 15
    finally:
        world.running.runtime.request_stop()
        await world.close()


async def test_sync_waits_for_a_pass_in_flight_to_commit(world, maker) -> None:
    """Read-your-writes: a caller of `sync` must not take a pass's position as done before its rows commit."""
    projector = world.gateway.projector
    await projector.sync()
    real = projector._db
    committing = asyncio.Event()

    class SlowCommit:
        def __getattr__(self, name):
            return getattr(real, name)

        @contextlib.asynccontextmanager
        async def transaction(self):
            async with real.transaction() as conn:
                yield conn
                committing.set()
                await asyncio.sleep(0.3)  # folded and checkpointed, not yet committed

    script = script_for(world, maker, steps=1)
    await script.advance(1)
    projector._db = SlowCommit()
    try:
        in_flight = asyncio.ensure_future(projector.run_once())
        await committing.wait()
        projector._db = real
        await projector.sync()
        row = await world.gateway.db.fetchrow("SELECT status FROM chains_view WHERE chain_id = $1", script.chain_id)
        await in_flight
    finally:
        projector._db = real
    assert row is not None and row["status"] == "running"


@pytest.mark.parametrize("bogus", ["99999999999999999999999999999999", "-1", "abc", str(2**63)])
async def test_a_bogus_last_event_id_is_a_400_not_a_dropped_connection(world, maker, bogus: str) -> None:
    script = script_for(world, maker, steps=1)
    await script.finish()
    response = await maker.client.get(f"/chains/{script.chain_id}/events", headers={"Last-Event-ID": bogus})
    assert_error(response, 400, "invalid_last_event_id")
    assert "Last-Event-ID" in response.json()["detail"]
    huge = await maker.client.get(f"/chains/{script.chain_id}/events", params={"last_event_id": str(2**63)})
    assert_error(huge, 422, "invalid_request")


@pytest.mark.parametrize("past", [0, 1, 1000, None], ids=["at", "one-past", "far-past", "int64-max"])
async def test_resuming_at_or_past_the_end_of_a_finished_chain_closes_the_stream_at_once(
        world, maker, open_stream, past: int | None) -> None:
    script = script_for(world, maker, steps=1)
    total = await script.finish()
    stream = await open_stream(maker.client, script.chain_id, last=2**63 - 1 if past is None else total + past)
    assert await stream.rest(timeout=5.0) == [] and stream.pings == 0
