"""Helpers of the delivery integration tests: the service's test settings, a registered user, a finished
chain, waiting for what a destination shows, and reading a delivery's stream from the log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from contracts import REGISTRY, Message
from contracts.streams import delivery_stream
from services.delivery.settings import DeliverySettings
from services.runtime.eventstore import EventStore
from tests.conftest import Backends
from tests.fakes.gateway_world import ChainScript, GatewayWorld, png

__all__ = ["TOKEN", "delivery_settings", "finished_chain", "registered", "stream_of", "until"]

TOKEN = "123456:TEST-bot-token-never-in-a-log"
T = TypeVar("T")


def delivery_settings(backends: Backends, *, telegram_url: str, public_base_url: str, **overrides: Any,
                      ) -> DeliverySettings:
    """Short waits everywhere: a 2 s ack wait, 2 s sends under a 5 s lease, retries 0.2 s apart within a minute."""
    values: dict[str, Any] = dict(
        service_name="delivery", environment="test", nats_url=backends.nats_url, database_url=backends.database_url,
        http_host="127.0.0.1", http_port=0, ack_wait_s=2.0, retry_delay_s=0.2, max_deliver=5, graceful_timeout_s=5.0,
        delivery_telegram_bot_token=TOKEN, delivery_telegram_api_url=telegram_url, delivery_timeout_s=2.0,
        delivery_lease_s=5.0, delivery_retry_schedule_s=[0.2, 0.4], delivery_retry_window_s=60.0,
        webhook_allow_private=True, public_base_url=public_base_url)
    values.update(overrides)
    return DeliverySettings(**values)


async def registered(world: GatewayWorld) -> tuple[httpx.AsyncClient, str]:
    """A program acting for a newly signed-up user: its client (API key) and the user id."""
    async with world.client() as browser:
        key = (await browser.post("/auth/signup")).json()["api_key"]
    client = world.client(headers={"Authorization": f"Bearer {key}"})
    return client, (await client.get("/me")).json()["user_id"]


async def finished_chain(world: GatewayWorld, user_id: str, *, fail_at: int | None = None, steps: int = 2,
                         request_text: str = "on a beach at sunset") -> ChainScript:
    reference = await world.blobs.put_image(png((200, 120, 90)))
    chain = world.chain(user_id=user_id, character_id="luna", reference=reference, steps=steps, fail_at=fail_at,
                        request_text=request_text)
    await chain.finish()
    return chain


async def until(probe: Callable[[], T | Awaitable[T]], *, timeout_s: float = 30.0, what: str = "the condition") -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g}s")
        await asyncio.sleep(0.05)


async def stream_of(store: EventStore, delivery_id: str) -> list[Message]:
    return [message for _, message in await store.replay(delivery_stream(delivery_id), REGISTRY)]
