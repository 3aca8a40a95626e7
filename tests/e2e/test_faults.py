"""Faults of the infrastructure under running chains: the database or NATS goes away and comes back.

For the database, `likeness up` runs every service against a Postgres of the test's own (so the test,
not the launcher, decides how long it is down); for NATS, against its embedded one, which it must start
again itself. The fake ComfyUI renders slowly enough that chains are mid-flight when the fault comes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import nats
import psutil
import pytest

from contracts.subjects import DEAD_LETTERS_STREAM
from services.launcher.embedded import EmbeddedPostgres
from services.runtime.settings import to_asyncpg_dsn
from tests.e2e.fakes import FakeComfy
from tests.e2e.stack import Background, EditRun, Stack, clean_env, started

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHAINS = 10
OUTAGE_S = 15.0
REQUESTS = ("on a beach at sunset", "in a red summer dress on a beach")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def postgres(workdir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(workdir / "postgres").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def slow_comfy(workdir: Path) -> Iterator[FakeComfy]:
    # 8 sampler steps of 0.25 s: a render takes about 2 s, so chains are mid-render when Postgres goes.
    fake = FakeComfy(workdir, "--step-delay", "0.25")
    try:
        yield fake
    finally:
        fake.process.stop()


@pytest.fixture(scope="module")
def stack(workdir: Path, postgres: EmbeddedPostgres, slow_comfy: FakeComfy) -> Iterator[Stack]:
    yield from started(Stack(workdir / "stack", env={
        "LIKENESS_DATABASE_URL": postgres.url, "LIKENESS_COMFYUI_URLS": slow_comfy.url,
    }))


def query(url: str, sql: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(to_asyncpg_dsn(url), timeout=10)
        try:
            return await conn.fetch(sql, timeout=10)
        finally:
            await conn.close(timeout=10)

    return asyncio.run(run())


def dead_letter_count(nats_url: str) -> int:
    async def count() -> int:
        nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=1)
        try:
            return (await nc.jetstream().stream_info(DEAD_LETTERS_STREAM)).state.messages
        finally:
            await nc.drain()

    return asyncio.run(count())


def test_chains_survive_a_postgres_restart(stack: Stack, postgres: EmbeddedPostgres, photo: Path) -> None:
    with concurrent.futures.ThreadPoolExecutor(CHAINS) as pool:
        runs = [pool.submit(stack.edit, photo, REQUESTS[i % 2], timeout_s=300) for i in range(CHAINS)]
        # Down once the first chains are under way (planned, some mid-render), while others are still arriving.
        deadline = time.monotonic() + 60
        while not query(postgres.url, "SELECT 1 FROM events WHERE type = 'chain.planned' LIMIT 1"):
            assert time.monotonic() < deadline, "no chain was planned within 60 s"
            time.sleep(0.2)
        postgres.stop("immediate")
        time.sleep(OUTAGE_S)
        postgres.start()
        back = time.monotonic()
        gateway = f"http://127.0.0.1:{stack.port}"
        answered = None
        while time.monotonic() - back < 30:
            try:
                if httpx.get(f"{gateway}/characters", timeout=5).status_code == 200:
                    answered = time.monotonic() - back
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        done: list[EditRun] = [run.result(timeout=400) for run in runs]

    for run in done:
        assert run.returncode == 0, f"chain {run.chain_id}: exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    ends = query(postgres.url, "SELECT stream_id, type FROM events WHERE type IN "
                               "('chain.completed', 'chain.failed', 'chain.refused')")
    ended = {row["stream_id"]: row["type"] for row in ends}
    assert all(ended.get(f"chain-{run.chain_id}") == "chain.completed" for run in done), ended
    assert answered is not None and answered <= 5.0, f"the gateway answered 200 only after {answered} s"
    assert dead_letter_count(stack.nats_url) == 0
    deadline = time.monotonic() + 30
    while query(postgres.url, "SELECT count(*) AS n FROM outbox")[0]["n"]:
        assert time.monotonic() < deadline, "the outbox did not empty within 30 s of the restart"
        time.sleep(0.5)
    assert len({run.chain_id for run in done}) == CHAINS and all(isinstance(r.chain_id, uuid.UUID) for r in done)


@pytest.fixture(scope="module")
def own_nats_stack(workdir: Path, slow_comfy: FakeComfy) -> Iterator[Stack]:
    """`likeness up` with its embedded NATS (and Postgres), which it must keep running."""
    yield from started(Stack(workdir / "own-nats", env={"LIKENESS_COMFYUI_URLS": slow_comfy.url}))


def test_chains_and_the_cli_ride_out_nats_killed_and_restarted_by_up(own_nats_stack: Stack, photo: Path) -> None:
    stack = own_nats_stack
    before = json.loads((stack.state_dir / "run.json").read_text())
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(stack.edit, photo, REQUESTS[i % 2], timeout_s=300) for i in range(4)]
        deadline = time.monotonic() + 60
        while not query(stack.database_url, "SELECT 1 FROM events WHERE type = 'chain.planned' LIMIT 1"):
            assert time.monotonic() < deadline, "no chain was planned within 60 s"
            time.sleep(0.2)
        psutil.Process(before["nats_pid"]).kill()
        done: list[EditRun] = [run.result(timeout=400) for run in runs]

    for run in done:
        assert run.returncode == 0, f"chain {run.chain_id}: exit {run.returncode}\n{run.stdout}\n{run.stderr}"
        assert "Traceback" not in run.stderr, run.stderr
    # Each CLI was following its chain when NATS went, said so, and saw the end.
    assert all("waiting for it to come back" in run.stdout for run in done), [run.stdout for run in done]
    ends = {row["stream_id"]: row["type"] for row in query(
        stack.database_url, "SELECT stream_id, type FROM events WHERE type IN ('chain.completed', 'chain.failed')")}
    assert all(ends.get(f"chain-{run.chain_id}") == "chain.completed" for run in done), ends
    after = json.loads((stack.state_dir / "run.json").read_text())
    assert after["nats_pid"] != before["nats_pid"] and psutil.pid_exists(after["nats_pid"])
    status = stack.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert str(after["nats_pid"]) in status.stdout
    assert "embedded nats" in stack.log("up") and "running again" in stack.log("up")


# -- renderers: a slow render is left alone, a dead renderer's step goes to another ---------------------

ACK_WAIT_S = 5.0


@pytest.fixture(scope="module")
def slower_comfy(workdir: Path) -> Iterator[FakeComfy]:
    # 1.5 s a sampler step: a render takes several ack waits.
    (workdir / "slower").mkdir(exist_ok=True)
    fake = FakeComfy(workdir / "slower", "--step-delay", "1.5")
    try:
        yield fake
    finally:
        fake.process.stop()


@pytest.fixture(scope="module")
def renderers(workdir: Path, slower_comfy: FakeComfy) -> Iterator[Stack]:
    """A stack whose consumers wait only 5 s for an ack before JetStream redelivers."""
    yield from started(Stack(workdir / "renderers", env={
        "LIKENESS_COMFYUI_URLS": slower_comfy.url, "LIKENESS_ACK_WAIT_S": str(ACK_WAIT_S)}))


def comfy_prompts(comfy: FakeComfy) -> set[str]:
    """Ids of every prompt the fake ComfyUI was sent (the renderer deletes history entries once read)."""
    return set(httpx.get(f"{comfy.url}/_fake/prompts", timeout=5).json())


def wait_for_prompts(comfy: FakeComfy, count: int, timeout_s: float) -> float:
    started_at = time.monotonic()
    while len(comfy_prompts(comfy)) < count:
        assert time.monotonic() - started_at < timeout_s, f"fewer than {count} prompts after {timeout_s:.0f}s"
        time.sleep(0.2)
    return time.monotonic() - started_at


def test_a_render_longer_than_the_ack_wait_is_never_redelivered(renderers: Stack, slower_comfy: FakeComfy,
                                                                 photo: Path) -> None:
    stack = renderers
    before = len(comfy_prompts(slower_comfy))
    started_at = time.monotonic()
    run = stack.edit(photo, "on a beach at sunset", timeout_s=180)
    took = time.monotonic() - started_at
    assert run.returncode == 0, run.stdout + run.stderr
    assert took > 2 * ACK_WAIT_S, f"the render took {took:.1f}s: not longer than the ack wait, proves nothing"
    assert len(comfy_prompts(slower_comfy)) - before == 1
    types = [event.type for event in stack.events(run.chain_id)]
    assert types.count("chain.step_rendered") == 1 and types[-1] == "chain.completed"


def test_a_killed_renderers_step_is_rendered_by_another_within_30_s(renderers: Stack, slower_comfy: FakeComfy,
                                                                   workdir: Path, photo: Path) -> None:
    stack = renderers
    before = len(comfy_prompts(slower_comfy))
    second = None
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            edit = pool.submit(stack.edit, photo, "on a snowy mountain", timeout_s=240)
            wait_for_prompts(slower_comfy, before + 1, 60)  # up's renderer, the only one, is rendering it
            second = Background("renderer-2", [sys.executable, "-m", "services.renderer"], clean_env(
                LIKENESS_COMFYUI_URLS=slower_comfy.url, LIKENESS_ACK_WAIT_S=str(ACK_WAIT_S),
                LIKENESS_NATS_URL=stack.nats_url, LIKENESS_DATABASE_URL=stack.database_url,
                LIKENESS_SERVICE_NAME="renderer", LIKENESS_HTTP_PORT="0"), workdir)
            psutil.Process(json.loads((stack.state_dir / "run.json").read_text())["services"]["renderer"]["pid"]).kill()
            # The second renderer (or `up`'s, restarted) takes the step once its ack wait runs out.
            redelivered_after = wait_for_prompts(slower_comfy, before + 2, 30)
            run = edit.result(timeout=300)
    finally:
        if second is not None:
            second.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    assert redelivered_after <= 30
    assert [event.type for event in stack.events(run.chain_id)][-1] == "chain.completed"
