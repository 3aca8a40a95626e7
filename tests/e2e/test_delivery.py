"""Delivery end to end: `likeness up` starts the delivery service beside the others (its own process); a user
links a Telegram chat (the fake Bot API) and a signed webhook (a receiver), asks for a picture through the
public API, and both get it once the chain completes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.comfy_script import ComfyScript
from tests.e2e.fakes import FakeComfy
from tests.e2e.stack import Stack, started
from tests.faces import face_of
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TOKEN = "987654:E2E-bot-token"
CHAT = "31337"
CHAIN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("delivery-e2e")


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(token=TOKEN, chats={CHAT}) as fake:
        yield fake


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(workdir: Path, comfy: FakeComfy, telegram: FakeTelegram) -> Iterator[Stack]:
    yield from started(Stack(workdir / "stack", env={
        "LIKENESS_COMFYUI_URLS": comfy.url, "LIKENESS_DELIVERY_TELEGRAM_BOT_TOKEN": TOKEN,
        "LIKENESS_DELIVERY_TELEGRAM_API_URL": telegram.url, "LIKENESS_WEBHOOK_ALLOW_PRIVATE": "true"}))


def test_a_picture_made_through_the_api_reaches_telegram_and_a_signed_webhook(
        stack: Stack, telegram: FakeTelegram, receiver: WebhookReceiver, script: ComfyScript) -> None:
    assert "delivery" in stack.info["services"]
    base = f"http://127.0.0.1:{stack.port}"
    with httpx.Client(base_url=base, timeout=60) as browser:
        key = browser.post("/auth/signup").json()["api_key"]
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.put("/delivery/telegram", json={"chat_id": CHAT}).status_code == 200
        hook = client.post("/delivery/webhooks", json={"url": receiver.url_for("e2e")})
        assert hook.status_code == 201, hook.text
        receiver.secret = hook.json()["secret"]

        made = client.post("/characters/upload-image", files={"image": ("me.png", face_of(0))}, data={"name": "Ada"})
        assert made.status_code == 201, f"{made.text}\n{stack.logs()}"
        script.reset("same")
        job = client.post("/chat/generate-image", json={"character_id": made.json()["id"],
                                                        "request": "put her on a beach"})
        assert job.status_code == 202, job.text
        job_id = job.json()["job_id"]
        done = client.get(f"/wait/{job_id}", params={"timeout": CHAIN_TIMEOUT_S}, timeout=CHAIN_TIMEOUT_S + 30).json()
        assert done["status"] == "completed", f"{done}\n{stack.logs()}"

        deadline = time.monotonic() + 60
        while not (receiver.delivered("e2e") and telegram.sent("sendPhoto")):
            assert time.monotonic() < deadline, f"{receiver.requests}\n{telegram.requests}\n{stack.logs()}"
            time.sleep(0.2)
        (webhook,) = receiver.delivered("e2e")
        assert webhook["body"]["type"] == "chain.completed" and webhook["body"]["data"]["chain_id"] == job_id
        (photo,) = telegram.sent("sendPhoto")
        assert photo["chat_id"] == CHAT and photo["caption"] == "put her on a beach"
        assert photo["photo_sha256"] == done["result"]["sha256"]

        link = webhook["body"]["data"]["image"]["url"]
        assert link.startswith(base)  # `up` points the links at its own gateway
        fetched = httpx.get(link, timeout=30)
        assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == done["result"]["sha256"]

        log = client.get("/delivery/log", params={"chain_id": job_id}).json()["deliveries"]
        assert {(d["channel"], d["status"]) for d in log} == {("telegram", "delivered"), ("webhook", "delivered")}
