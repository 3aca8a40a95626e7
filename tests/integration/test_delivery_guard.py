"""Webhook and Google Chat URLs that point into our own network are refused, at registration and at send time,
unless LIKENESS_WEBHOOK_ALLOW_PRIVATE=true (here: false, as in production)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from services.delivery.senders import HttpSender
from services.delivery.service import build_runtime
from tests.conftest import Backends
from tests.fakes.gateway_world import GatewayWorld
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.delivery_helpers import delivery_settings, registered
from tests.integration.gateway_helpers import assert_error
from tests.runtimes import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url).start()
    yield world
    await world.close()


@pytest.fixture(scope="module")
async def guarded(backends: Backends, world: GatewayWorld) -> AsyncIterator[None]:
    settings = delivery_settings(backends, telegram_url="http://127.0.0.1:9", public_base_url=world.url,
                                 webhook_allow_private=False)
    async with running(build_runtime(settings)):
        yield


@pytest.mark.usefixtures("guarded")
async def test_a_loopback_or_private_url_is_refused_when_registered(world: GatewayWorld,
                                                                    receiver: WebhookReceiver) -> None:
    client, _ = await registered(world)
    refused = assert_error(await client.post("/delivery/webhooks", json={"url": receiver.url_for("inside")}), 422,
                           "url_not_allowed")
    assert "loopback" in refused["detail"] and "LIKENESS_WEBHOOK_ALLOW_PRIVATE" in refused["detail"]
    for url in ("http://10.0.0.8/hook", "http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/x"):
        assert_error(await client.post("/delivery/webhooks", json={"url": url}), 422, "url_not_allowed")
    google = f"http://127.0.0.1:{receiver.port}/v1/spaces/A/messages?key=k&token=t"
    assert_error(await client.put("/delivery/google-chat", json={"url": google}), 422, "url_not_allowed")
    assert (await client.get("/delivery/webhooks")).json() == []
    assert receiver.requests == []


async def test_a_send_checks_the_address_again_and_sends_nothing_inside(backends: Backends,
                                                                        receiver: WebhookReceiver) -> None:
    # What a host name that resolved to a public address at registration, and to ours later, meets at send time.
    sender = HttpSender(delivery_settings(backends, telegram_url="http://127.0.0.1:9",
                                          public_base_url="http://127.0.0.1:8000", webhook_allow_private=False))
    try:
        result = await sender.post(receiver.url_for("rebound"), b"{}", {})
    finally:
        await sender.close()
    assert result.outcome == "rejected" and "loopback" in (result.error or "")
    assert [r for r in receiver.requests if r["name"] == "rebound"] == []
