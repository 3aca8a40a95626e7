"""Scale-out under faults: a 3-node JetStream cluster (every stream and the blob bucket with 3 replicas) and
two replicas of every chain service; while 100 chains run, one NATS node (the commands stream's leader) is
killed and restarted, and one replica of each service (the planner that leads the outbox relay among them)
is killed for good. Every chain must end exactly once, with no duplicate step record and no lost event:
the log's streams are gap-free, and JetStream holds exactly the events the log holds.

Renders use the renderer's draft engine (no ComfyUI configured), faces the dlib encoder: the fastest real
pipeline, so the test is about the bus and the log, not about rendering.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
from nats.js import JetStreamContext

from contracts import CHAIN_ENDS, Envelope, RequestChain
from contracts.streams import chain_stream
from contracts.subjects import COMMANDS_STREAM, DEAD_LETTERS_STREAM, EVENTS_STREAM, command_subject, event_filter
from services.launcher.embedded import free_port
from services.launcher.migrations import migrate
from services.launcher.scratch import fresh_database
from services.runtime.blobs import BUCKET, BlobStore
from services.runtime.settings import RuntimeSettings, nats_servers, to_asyncpg_dsn
from services.runtime.streams import ensure_streams
from tests.e2e.nats_cluster import NatsCluster
from tests.e2e.stack import Background, clean_env
from tests.faces import face_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHAINS = 100
REPLICAS = 3
SERVICES = ("planner", "renderer", "facecheck")
REQUESTS = ("on a beach at sunset", "in a red summer dress on a beach")
# A killed replica's unacked messages come back to the other one after this long.
ACK_WAIT_S = 5.0
ALL_END_WITHIN_S = 240.0
STREAMS = (EVENTS_STREAM, COMMANDS_STREAM, DEAD_LETTERS_STREAM, f"OBJ_{BUCKET}")
# At most one of each per (step, attempt) of a chain: a second one is a duplicate step record.
_ONCE_PER_ATTEMPT = {"chain.step_requested", "chain.step_rendered", "chain.step_scored", "chain.step_accepted"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[NatsCluster]:
    nodes = NatsCluster(workdir / "nats", size=REPLICAS).start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def cluster_db(database_url: str) -> str:
    """A database of this test's own on the session's Postgres, so its log holds only these chains."""
    url = fresh_database(database_url, "likeness_cluster")
    migrate(url)
    return url


class Replica:
    """One service process: `python -m services.<name>` against the cluster, with its HTTP port."""

    def __init__(self, service: str, index: int, env: dict[str, str], workdir: Path) -> None:
        self.name = f"{service}-{index}"
        self.port = free_port()
        self.process = Background(self.name, [sys.executable, "-m", f"services.{service}"],
                                  env | {"LIKENESS_HTTP_PORT": str(self.port), "LIKENESS_SERVICE_NAME": service,
                                         "LIKENESS_RENDERER_INSTANCE": self.name}, workdir)

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=2.0) as http:
            return await http.get(f"http://127.0.0.1:{self.port}{path}")

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.proc.poll() is None, f"{self.name} exited:\n{self.process.stderr()}"
            try:
                if (await self.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
        raise AssertionError(f"{self.name} was not ready within {timeout_s:.0f}s:\n{self.process.stderr()}")

    async def leads_the_relay(self) -> bool:
        return "likeness_outbox_relay_leader 1.0" in (await self.get("/metrics")).text

    def kill(self) -> None:
        self.process.proc.kill()
        self.process.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def replicas(cluster: NatsCluster, cluster_db: str, workdir: Path) -> Iterator[dict[str, list[Replica]]]:
    # Streams and bucket as an older single-copy deployment left them: the services raise them to 3 copies.
    asyncio.run(_provision(cluster.url, replicas=1))
    env = clean_env(LIKENESS_NATS_URL=cluster.url, LIKENESS_DATABASE_URL=cluster_db, LIKENESS_ENVIRONMENT="test",
                    LIKENESS_STREAM_REPLICAS=str(REPLICAS), LIKENESS_ACK_WAIT_S=str(ACK_WAIT_S),
                    LIKENESS_COMFYUI_URLS="", LIKENESS_STATE_DIR=str(workdir / "state"),
                    # The reference's face fills its picture: no upsampling needed to find it, 4x less CPU.
                    LIKENESS_FACE_DLIB_UPSAMPLE="0")
    started = {service: [Replica(service, i, env, workdir) for i in range(2)] for service in SERVICES}
    try:
        yield started
    finally:
        for replica in (r for group in started.values() for r in group):
            replica.process.stop(timeout_s=20)


async def _provision(url: str, *, replicas: int) -> None:
    nc = await nats.connect(nats_servers(url), connect_timeout=5)
    try:
        await ensure_streams(nc.jetstream(timeout=10), replicas=replicas)
        await BlobStore.open(nc.jetstream(timeout=10), settings=RuntimeSettings(nats_url=url, stream_replicas=replicas))
    finally:
        await nc.drain()


@pytest.fixture
async def js(cluster: NatsCluster) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_servers(cluster.url), connect_timeout=5, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.5)
    yield nc.jetstream(timeout=10)
    await nc.drain()


@pytest.fixture
async def db(cluster_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(to_asyncpg_dsn(cluster_db), min_size=1, max_size=2, timeout=10,
                                     command_timeout=10)
    yield pool
    await pool.close()


async def test_chains_end_once_with_no_duplicate_and_no_lost_event_through_node_and_replica_kills(
    cluster: NatsCluster, replicas: dict[str, list[Replica]], js: JetStreamContext, db: asyncpg.Pool,
    cluster_db: str,
) -> None:
    everyone = [r for group in replicas.values() for r in group]
    await asyncio.gather(*(replica.wait_ready(120) for replica in everyone))
    await _wait_replicated(js, REPLICAS)
    settings = RuntimeSettings(nats_url=cluster.url, database_url=cluster_db, stream_replicas=REPLICAS)
    reference = await (await BlobStore.open(js, settings=settings)).put_image(face_of(0))

    chain_ids = [uuid.uuid4() for _ in range(CHAINS)]
    submitted = time.monotonic()
    await asyncio.gather(*(_submit(js, chain_id, reference, REQUESTS[i % 2]) for i, chain_id in enumerate(chain_ids)))

    # Faults once chains are flowing: most are mid-flight or still queued.
    while await _ended(db) < 10:
        assert time.monotonic() - submitted < 120, "not even 10 chains ended within 120 s before any fault"
        await asyncio.sleep(0.2)
    relay_leaders = [r for r in replicas["planner"] if await r.leads_the_relay()]
    assert len(relay_leaders) == 1, "not exactly one planner leads the outbox relay"
    leader = (await js.stream_info(COMMANDS_STREAM)).cluster.leader
    assert leader, "the commands stream has no leader to kill"
    cluster.node(leader).kill()
    await asyncio.sleep(1.0)
    for victim in (relay_leaders[0], replicas["renderer"][0], replicas["facecheck"][0]):
        victim.kill()
    assert (at_fault := await _ended(db)) < CHAINS // 2, f"{at_fault} chains had ended before the faults: too late"
    await asyncio.sleep(4.0)
    cluster.node(leader).start()
    await asyncio.to_thread(cluster.wait_healthy, 60)

    while (ended := await _ended(db)) < CHAINS:
        if time.monotonic() - submitted > ALL_END_WITHIN_S:
            await _fail_unfinished(db, chain_ids, everyone, ended)
        await asyncio.sleep(0.5)

    rows = await db.fetch("SELECT stream_id, stream_version, type, data FROM events WHERE stream_id = ANY($1) "
                          "ORDER BY stream_id, stream_version", [chain_stream(c) for c in chain_ids])
    by_chain: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        by_chain.setdefault(row["stream_id"], []).append(row)
    assert len(by_chain) == CHAINS
    for stream, events in by_chain.items():
        assert [e["stream_version"] for e in events] == list(range(1, len(events) + 1)), f"{stream}: a gap"
        ends = [e["type"] for e in events if e["type"] in CHAIN_ENDS]
        assert ends == ["chain.completed"], f"{stream} ended {ends}: {[e['type'] for e in events]}"
        steps = Counter((e["type"], *_step_attempt(e["data"])) for e in events if e["type"] in _ONCE_PER_ATTEMPT)
        assert max(steps.values()) == 1, f"{stream}: duplicate step records {[k for k, n in steps.items() if n > 1]}"
    problems = await _settled(db, js, by_chain, timeout_s=30)
    assert not problems, problems

    # A process with the default of one copy (a CLI, a tool) provisions too: it must not strip the cluster's.
    await ensure_streams(js)
    await BlobStore.open(js, settings=RuntimeSettings(nats_url=cluster.url, database_url=cluster_db))
    await _wait_replicated(js, REPLICAS, timeout_s=5)


def _step_attempt(data: str | dict) -> tuple[int, int]:
    fields = json.loads(data) if isinstance(data, str) else data
    return fields["step"], fields["attempt"]


async def _submit(js: JetStreamContext, chain_id: uuid.UUID, reference, request: str) -> None:
    """RequestChain as `likeness edit` sends it; sent again with the same id while the cluster elects."""
    stream = chain_stream(chain_id)
    command = RequestChain(chain_id=chain_id, character_id=f"photo-{reference.sha256[:12]}", user_id="cluster-test",
                           request_text=request, reference_image=reference)
    envelope = Envelope.wrap(command, event_id=uuid.uuid4(), stream=stream, occurred_at=datetime.now(UTC),
                             correlation_id=stream, actor="cluster-test")
    await js.publish(command_subject(command.type), envelope.to_bytes(),
                     headers={"Nats-Msg-Id": str(envelope.event_id)}, timeout=10)


async def _ended(db: asyncpg.Pool) -> int:
    return await db.fetchval("SELECT count(DISTINCT stream_id) FROM events WHERE type = ANY($1)", list(CHAIN_ENDS))


async def _wait_replicated(js: JetStreamContext, replicas: int, timeout_s: float = 60.0) -> None:
    """Until every stream (the blob bucket's too) has `replicas` copies, a leader and every follower current."""
    deadline = time.monotonic() + timeout_s
    while True:
        infos = {name: await js.stream_info(name) for name in STREAMS}
        state = {name: (info.config.num_replicas, info.cluster.leader if info.cluster else None,
                        [peer.current for peer in (info.cluster.replicas or [])] if info.cluster else [])
                 for name, info in infos.items()}
        if all(n == replicas and leader and len(peers) == replicas - 1 and all(peers)
               for n, leader, peers in state.values()):
            return
        assert time.monotonic() < deadline, f"streams not replicated {replicas}x within {timeout_s:.0f}s: {state}"
        await asyncio.sleep(0.3)


async def _settled(db: asyncpg.Pool, js: JetStreamContext, by_chain: dict[str, list[asyncpg.Record]],
                   timeout_s: float) -> list[str]:
    """What is still wrong once the outbox had `timeout_s` to drain: [] when the outbox is empty, no
    command waits, nothing was dead-lettered, and JetStream holds each chain event of the log exactly once."""
    deadline = time.monotonic() + timeout_s
    while True:
        problems = []
        if outbox := await db.fetchval("SELECT count(*) FROM outbox"):
            problems.append(f"{outbox} outbox rows never published")
        if commands := (await js.stream_info(COMMANDS_STREAM)).state.messages:
            problems.append(f"{commands} commands never acked")
        if letters := (await js.stream_info(DEAD_LETTERS_STREAM)).state.messages:
            problems.append(f"{letters} dead letters")
        subjects = (await js.stream_info(EVENTS_STREAM, subjects_filter=event_filter("chain"))).state.subjects or {}
        on_nats: dict[str, Counter[str]] = {}
        for subject, count in subjects.items():
            _, _, family, name, stream = subject.split(".")
            on_nats.setdefault(stream, Counter())[f"{family}.{name}"] += count
        for stream, events in by_chain.items():
            logged = Counter(e["type"] for e in events)
            if on_nats.get(stream, Counter()) != logged:
                problems.append(f"{stream}: log {dict(logged)} but JetStream {dict(on_nats.get(stream, {}))}")
        if not problems or time.monotonic() > deadline:
            return problems
        await asyncio.sleep(0.5)


async def _fail_unfinished(db: asyncpg.Pool, chain_ids: list[uuid.UUID], everyone: list[Replica], ended: int) -> None:
    rows = await db.fetch("SELECT DISTINCT ON (stream_id) stream_id, type FROM events WHERE stream_id = ANY($1) "
                          "ORDER BY stream_id, stream_version DESC", [chain_stream(c) for c in chain_ids])
    last = {row["stream_id"]: row["type"] for row in rows}
    unfinished = {chain_stream(c): last.get(chain_stream(c), "(nothing logged)") for c in chain_ids
                  if last.get(chain_stream(c)) not in CHAIN_ENDS}
    logs = "\n".join(f"--- {r.name} (exit {r.process.proc.poll()}) ---\n{r.process.stderr(3000)}" for r in everyone)
    raise AssertionError(f"{ended}/{CHAINS} chains ended within {ALL_END_WITHIN_S:.0f}s; unfinished, with their "
                         f"last event: {unfinished}\n{logs}")
