"""Two delivery replicas as separate processes; the one that claimed an attempt is killed mid-send (its request
is in the receiver's hands, unanswered): the other takes the attempt over once the lease has passed, and the
receiver gets the message delivered once, under one webhook-id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from contracts import DeliveryAttempted, DeliveryClaimed, DeliverySucceeded
from services.launcher.embedded import free_port
from tests.conftest import Backends, service_env
from tests.fakes.gateway_world import GatewayWorld
from tests.fakes.webhook_receiver import Hang, WebhookReceiver
from tests.integration.delivery_helpers import TOKEN, finished_chain, registered, stream_of, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class Replica:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.delivery"], stdout=out,
                                         stderr=subprocess.STDOUT, env={**env, "LIKENESS_HTTP_PORT": str(self.port)})

    async def ready(self) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            async def probe() -> bool:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    return (await client.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await until(probe, timeout_s=60, what=f"replica {self.proc.pid} ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url).start()
    yield world
    await world.close()


@pytest.fixture
async def replicas(backends: Backends, world: GatewayWorld, tmp_path: Path) -> AsyncIterator[list[Replica]]:
    # A send may take 6 s; a claim is held 13 s (more than twice that); JetStream redelivers after 2 s.
    env = service_env(backends, LIKENESS_SERVICE_NAME="delivery", LIKENESS_ACK_WAIT_S="2",
                      LIKENESS_DELIVERY_TIMEOUT_S="6", LIKENESS_DELIVERY_LEASE_S="13",
                      LIKENESS_DELIVERY_RETRY_SCHEDULE_S="[0.2]", LIKENESS_DELIVERY_RETRY_WINDOW_S="120",
                      LIKENESS_WEBHOOK_ALLOW_PRIVATE="true", LIKENESS_PUBLIC_BASE_URL=world.url,
                      LIKENESS_DELIVERY_TELEGRAM_BOT_TOKEN=TOKEN, LIKENESS_EVENT_LOOP="asyncio")
    started = [Replica(env, tmp_path / f"replica-{i}.log") for i in range(2)]
    try:
        for replica in started:
            await replica.ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


async def test_a_replica_killed_mid_send_is_taken_over_and_the_message_arrives_once(
        world: GatewayWorld, receiver: WebhookReceiver, replicas: list[Replica]) -> None:
    client, user_id = await registered(world)
    created = await client.post("/delivery/webhooks", json={"url": receiver.url_for("once")})
    assert created.status_code == 201, created.text
    receiver.secret = created.json()["secret"]
    receiver.push(Hang(120))  # the first send reaches the receiver and is never answered

    chain = await finished_chain(world, user_id)
    hanging = await until(lambda: [r for r in receiver.requests if r["name"] == "once"], what="the first send")
    deliveries = (await client.get("/delivery/log", params={"chain_id": str(chain.chain_id)})).json()["deliveries"]
    (delivery,) = deliveries
    claims = [m for m in await stream_of(world.store, delivery["delivery_id"]) if isinstance(m, DeliveryClaimed)]
    first_worker = claims[0].worker
    pid = int(first_worker.split(":")[1])
    (victim,) = [r for r in replicas if r.proc.pid == pid]
    os.kill(pid, signal.SIGKILL)
    victim.proc.wait(10)

    await until(lambda: receiver.delivered("once"), timeout_s=60, what="the message delivered by the other replica")
    messages = await until(lambda: _ended(world, delivery["delivery_id"]), what="the delivery recorded as delivered")
    claims = [m for m in messages if isinstance(m, DeliveryClaimed)]
    assert [c.takeover_of for c in claims] == [None, first_worker]
    survivor = claims[1].worker
    assert survivor != first_worker
    attempted = [m for m in messages if isinstance(m, DeliveryAttempted)]
    assert [(a.attempt, a.worker, a.outcome) for a in attempted] == [(1, survivor, "delivered")]
    assert sum(isinstance(m, DeliverySucceeded) for m in messages) == 1

    # The receiver's view: one delivery, and every request the same message.
    sent = [r for r in receiver.requests if r["name"] == "once"]
    assert len(receiver.delivered("once")) == 1 and len(sent) == 2
    assert {r["webhook-id"] for r in sent} == {hanging[0]["webhook-id"]} == {delivery["message_id"]}


async def _ended(world: GatewayWorld, delivery_id: str) -> list | None:
    messages = await stream_of(world.store, delivery_id)
    return messages if any(isinstance(m, DeliverySucceeded) for m in messages) else None
