"""Delivery over real NATS and Postgres: the gateway's /delivery API, the delivery service, and fake Telegram
Bot API, Google Chat and webhook servers on real sockets.

A chain is written into the log as the planner would; the delivery service reads its events from JetStream
and what the user linked from the log, and the fakes show what a person or a program would receive.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import httpx
import pytest

from services.delivery.service import build_runtime
from tests.conftest import Backends
from tests.fakes.gateway_world import GatewayWorld
from tests.fakes.google_chat_server import ChatError, FakeGoogleChat
from tests.fakes.telegram_server import BotError, FakeTelegram
from tests.fakes.webhook_receiver import Answer, WebhookReceiver
from tests.integration.delivery_helpers import (
    TOKEN,
    delivery_settings,
    finished_chain,
    registered,
    stream_of,
    until,
)
from tests.integration.gateway_helpers import assert_error
from tests.runtimes import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CHAT = "4242"


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(token=TOKEN, chats={CHAT, "5151"}) as fake:
        yield fake


@pytest.fixture(scope="module")
def google_chat() -> Iterator[FakeGoogleChat]:
    with FakeGoogleChat() as fake:
        yield fake


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url).start()
    yield world
    await world.close()


@pytest.fixture(scope="module", autouse=True)
async def delivery(backends: Backends, world: GatewayWorld, telegram: FakeTelegram) -> AsyncIterator[None]:
    settings = delivery_settings(backends, telegram_url=telegram.url, public_base_url=world.url)
    async with running(build_runtime(settings)):
        yield


async def webhook(client: httpx.AsyncClient, receiver: WebhookReceiver, name: str,
                  events: list[str] | None = None) -> dict:
    created = await client.post("/delivery/webhooks", json={"url": receiver.url_for(name),
                                                            **({"events": events} if events else {})})
    assert created.status_code == 201, created.text
    return created.json()


async def deliveries(client: httpx.AsyncClient, **query: str) -> list[dict]:
    response = await client.get("/delivery/log", params=query)
    assert response.status_code == 200, response.text
    return response.json()["deliveries"]


async def ended(client: httpx.AsyncClient, chain_id: object, count: int) -> list[dict]:
    """The chain's deliveries once `count` of them have ended (delivered or failed)."""
    async def probe() -> list[dict] | None:
        found = await deliveries(client, chain_id=str(chain_id))
        done = [d for d in found if d["status"] != "pending"]
        return found if len(done) >= count else None

    return await until(probe, what=f"{count} deliveries of chain {chain_id} ending")


async def test_a_finished_picture_reaches_telegram_google_chat_and_a_verified_webhook(
        world: GatewayWorld, telegram: FakeTelegram, google_chat: FakeGoogleChat, receiver: WebhookReceiver) -> None:
    client, user_id = await registered(world)
    linked = await client.put("/delivery/telegram", json={"chat_id": CHAT})
    assert linked.status_code == 200 and linked.json() == {"chat_id": CHAT}
    assert telegram.sent("sendMessage")[-1]["chat_id"] == CHAT  # the bot checked it can write there
    space_url = google_chat.webhook_url("SPACE1")
    gchat = await client.put("/delivery/google-chat", json={"url": space_url})
    assert gchat.status_code == 200 and "token" not in gchat.text and "key=" not in gchat.text
    created = await webhook(client, receiver, "first", ["completed", "step_accepted"])
    assert created["secret"].startswith("whsec_") and created["events"] == ["completed", "step_accepted"]
    receiver.secret = created["secret"]
    listed = (await client.get("/delivery")).json()
    assert listed["telegram"] == {"chat_id": CHAT} and listed["google_chat"]["url"] == space_url.split("?")[0]
    assert [w["endpoint_id"] for w in listed["webhooks"]] == [created["endpoint_id"]]
    assert "whsec_" not in json.dumps(listed) and created["secret"] not in json.dumps(listed)

    chain = await finished_chain(world, user_id, request_text="reading in a cafe")
    found = await ended(client, chain.chain_id, 5)  # telegram, google chat, webhook x (2 steps + completed)
    assert {d["status"] for d in found} == {"delivered"}

    photo = next(r for r in telegram.sent("sendPhoto") if r["caption"] == "reading in a cafe")
    final = chain.images[-1]
    assert photo["chat_id"] == CHAT and photo["photo_sha256"] == final.sha256

    (card,) = google_chat.messages("SPACE1")
    image_url = card["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["image"]["imageUrl"]
    fetched = await client.get(image_url.removeprefix(world.url))
    assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == final.sha256
    async with world.client() as stranger:  # no login: the link alone shows the picture
        assert (await stranger.get(image_url.removeprefix(world.url))).status_code == 200
        tampered = await stranger.get(image_url.removeprefix(world.url).replace("signature=", "signature=0"))
        assert_error(tampered, 403, "bad_image_link")

    got = receiver.delivered("first")
    assert sorted(r["body"]["type"] for r in got) == ["chain.completed", "chain.step_accepted", "chain.step_accepted"]
    assert all(r["library_ok"] and r["hmac_ok"] for r in got)
    completed = next(r for r in got if r["body"]["type"] == "chain.completed")
    assert completed["body"]["data"]["image"]["sha256"] == final.sha256
    assert completed["body"]["data"]["request_text"] == "reading in a cafe"
    assert len({r["webhook-id"] for r in got}) == 3

    logged = {d["channel"] for d in found}
    assert logged == {"telegram", "google_chat", "webhook"}
    assert all(len(d["attempts"]) == 1 and d["attempts"][0]["outcome"] == "delivered" for d in found)
    one = await client.get(f"/delivery/log/{found[0]['delivery_id']}")
    assert one.status_code == 200 and one.json() == found[0]


async def test_a_failed_chain_sends_its_reason(world: GatewayWorld, telegram: FakeTelegram,
                                               receiver: WebhookReceiver) -> None:
    client, user_id = await registered(world)
    assert (await client.put("/delivery/telegram", json={"chat_id": "5151"})).status_code == 200
    receiver.secret = (await webhook(client, receiver, "failures", ["failed"]))["secret"]
    chain = await finished_chain(world, user_id, fail_at=1)
    await ended(client, chain.chain_id, 2)
    text = next(r["text"] for r in telegram.sent("sendMessage") if r["chat_id"] == "5151" and "scripted" in r["text"])
    assert text.startswith("Your picture could not be made: scripted failure")
    (failed,) = receiver.delivered("failures")
    assert failed["body"]["type"] == "chain.failed" and failed["body"]["data"]["reason"] == "scripted failure"


async def test_5xx_answers_are_retried_until_one_succeeds_each_attempt_in_the_log(
        world: GatewayWorld, receiver: WebhookReceiver) -> None:
    client, user_id = await registered(world)
    receiver.secret = (await webhook(client, receiver, "flaky"))["secret"]
    receiver.push(Answer(500), Answer(503))
    chain = await finished_chain(world, user_id)
    (delivery,) = await ended(client, chain.chain_id, 1)
    assert delivery["status"] == "delivered"
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in delivery["attempts"]] == [
        (1, "retry", 500), (2, "retry", 503), (3, "delivered", 200)]
    sent = [r for r in receiver.requests if r["name"] == "flaky"]
    assert [r["status"] for r in sent] == [500, 503, 200]
    assert len({r["webhook-id"] for r in sent}) == 1  # one message, three tries: receivers de-duplicate on it
    first, second = (datetime.fromisoformat(a["at"]) for a in delivery["attempts"][:2])
    assert second >= datetime.fromisoformat(delivery["attempts"][0]["retry_at"]) and second > first


async def test_a_4xx_answer_is_not_retried(world: GatewayWorld, receiver: WebhookReceiver) -> None:
    client, user_id = await registered(world)
    receiver.secret = (await webhook(client, receiver, "strict"))["secret"]
    receiver.push(Answer(400))
    chain = await finished_chain(world, user_id)
    (delivery,) = await ended(client, chain.chain_id, 1)
    assert delivery["status"] == "failed" and "not retried" in delivery["failure"]
    assert [(a["outcome"], a["status_code"]) for a in delivery["attempts"]] == [("rejected", 400)]
    messages = await stream_of(world.store, delivery["delivery_id"])
    assert [type(m).__name__ for m in messages] == ["DeliveryRequested", "DeliveryClaimed", "DeliveryAttempted",
                                                    "DeliveryFailed"]
    assert [r["status"] for r in receiver.requests if r["name"] == "strict"] == [400]


async def test_a_429_is_retried_after_the_time_it_asks_for(world: GatewayWorld, telegram: FakeTelegram,
                                                           receiver: WebhookReceiver) -> None:
    client, user_id = await registered(world)
    assert (await client.put("/delivery/telegram", json={"chat_id": CHAT})).status_code == 200
    receiver.secret = (await webhook(client, receiver, "busy"))["secret"]
    telegram.push(BotError.flood(1))
    receiver.push(Answer(429, retry_after=1))
    chain = await finished_chain(world, user_id)
    for delivery in await ended(client, chain.chain_id, 2):
        first, second = delivery["attempts"]
        assert (first["outcome"], first["status_code"], second["outcome"]) == ("retry", 429, "delivered")
        asked = datetime.fromisoformat(first["retry_at"]) - datetime.fromisoformat(first["at"])
        # The schedule's own wait is 0.2 s: the 1 s is the destination's.
        assert asked.total_seconds() >= 1.0
        assert datetime.fromisoformat(second["at"]) >= datetime.fromisoformat(first["retry_at"])


async def test_google_chat_makes_one_message_of_a_retried_request(world: GatewayWorld,
                                                                  google_chat: FakeGoogleChat) -> None:
    client, user_id = await registered(world)
    assert (await client.put("/delivery/google-chat", json={"url": google_chat.webhook_url("SPACE2")})).is_success
    google_chat.push(ChatError.unavailable())
    chain = await finished_chain(world, user_id)
    (delivery,) = await ended(client, chain.chain_id, 1)
    assert [a["status_code"] for a in delivery["attempts"]] == [503, 200]
    assert len(google_chat.messages("SPACE2")) == 1
    assert {r["request_id"] for r in google_chat.requests if r["space"] == "SPACE2"} == {delivery["message_id"]}


async def test_after_rotation_the_old_secret_fails_and_a_replay_with_the_new_one_succeeds(
        world: GatewayWorld, receiver: WebhookReceiver) -> None:
    client, user_id = await registered(world)
    created = await webhook(client, receiver, "rotating")
    rotated = await client.post(f"/delivery/webhooks/{created['endpoint_id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret_generation"] == 2 and rotated.json()["secret"] != created["secret"]
    receiver.secret = created["secret"]  # a receiver that has not taken the new secret yet
    chain = await finished_chain(world, user_id)
    (refused,) = await ended(client, chain.chain_id, 1)
    assert refused["status"] == "failed" and refused["attempts"][0]["status_code"] == 401
    (seen,) = [r for r in receiver.requests if r["name"] == "rotating"]
    assert not seen["library_ok"] and not seen["hmac_ok"]

    receiver.secret = rotated.json()["secret"]
    replayed = await client.post(f"/delivery/log/{refused['delivery_id']}/replay")
    assert replayed.status_code == 202, replayed.text
    (replay,) = replayed.json()
    assert replay["trigger"] == "replay" and replay["replay_of"] == refused["delivery_id"]
    await until(lambda: receiver.delivered("rotating"), what="the replay arriving")
    (good,) = receiver.delivered("rotating")
    assert good["webhook-id"] == refused["message_id"] == replay["message_id"]
    done = await until(lambda: _delivered(client, replay["delivery_id"]), what="the replay recorded")
    assert done["attempts"][0]["outcome"] == "delivered"


async def _delivered(client: httpx.AsyncClient, delivery_id: str) -> dict | None:
    body = (await client.get(f"/delivery/log/{delivery_id}")).json()
    return body if body.get("status") == "delivered" else None


async def test_a_past_event_is_replayed_to_one_endpoint(world: GatewayWorld, receiver: WebhookReceiver) -> None:
    client, user_id = await registered(world)
    first = await webhook(client, receiver, "replayed", ["completed"])
    receiver.secret = first["secret"]
    chain = await finished_chain(world, user_id)
    await ended(client, chain.chain_id, 1)
    (original,) = receiver.delivered("replayed")
    event_id = original["body"]["data"]["event_id"]
    replay = await client.post("/delivery/replay", json={"event_id": event_id, "endpoint_id": first["endpoint_id"]})
    assert replay.status_code == 202, replay.text
    await until(lambda: len(receiver.delivered("replayed")) == 2, what="the event delivered again")
    again = receiver.delivered("replayed")[1]
    assert again["raw"] == original["raw"] and again["webhook-id"] == original["webhook-id"]
    assert_error(await client.post("/delivery/replay", json={"event_id": str(chain.chain_id)}), 404,
                 "event_not_found")


async def test_send_telegram_sends_a_finished_job_now(world: GatewayWorld, telegram: FakeTelegram) -> None:
    client, user_id = await registered(world)
    chain = await finished_chain(world, user_id, request_text="a picture to send by hand")
    assert_error(await client.post(f"/chat/job/{chain.chain_id}/send-telegram"), 409, "telegram_not_linked")
    assert (await client.put("/delivery/telegram", json={"chat_id": CHAT})).status_code == 200
    sent = await client.post(f"/chat/job/{chain.chain_id}/send-telegram")
    assert sent.status_code == 202, sent.text
    assert sent.json()["trigger"] == "send_now" and sent.json()["channel"] == "telegram"
    photo = await until(lambda: [r for r in telegram.sent("sendPhoto") if r["caption"] == "a picture to send by hand"],
                        what="the photo in the chat")
    assert photo[0]["photo_sha256"] == chain.images[-1].sha256

    other, _ = await registered(world)
    assert_error(await other.post(f"/chat/job/{chain.chain_id}/send-telegram"), 404, "chain_not_found")
    unfinished = world.chain(user_id=user_id, character_id="luna", reference=chain.reference)
    await unfinished.advance(3)
    assert_error(await client.post(f"/chat/job/{unfinished.chain_id}/send-telegram"), 409, "job_not_finished")


async def test_bad_requests_get_a_clear_4xx(world: GatewayWorld, receiver: WebhookReceiver) -> None:
    client, _ = await registered(world)
    assert_error(await client.put("/delivery/telegram", json={"chat_id": "not a chat"}), 422, "invalid_chat_id")
    unknown = assert_error(await client.put("/delivery/telegram", json={"chat_id": "777"}), 422,
                           "telegram_chat_unreachable")
    assert "chat not found" in unknown["detail"].lower()
    assert_error(await client.post("/delivery/webhooks", json={"url": "ftp://example.com/x"}), 422, "invalid_url")
    assert_error(await client.post("/delivery/webhooks", json={"url": "https://u:p@example.com/x"}), 422, "invalid_url")
    assert_error(await client.post("/delivery/webhooks", json={"url": receiver.url_for("x"), "events": ["nope"]}),
                 422, "invalid_request")
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(await client.delete(f"/delivery/webhooks/{missing}"), 404, "webhook_not_found")
    assert_error(await client.get(f"/delivery/log/{missing}"), 404, "delivery_not_found")
    async with world.client() as anonymous:
        assert_error(await anonymous.get("/delivery"), 403, "login_required")


async def test_an_endpoint_is_subscribed_listed_and_deleted(world: GatewayWorld, receiver: WebhookReceiver) -> None:
    client, _ = await registered(world)
    created = await webhook(client, receiver, "managed")
    patched = await client.patch(f"/delivery/webhooks/{created['endpoint_id']}",
                                 json={"events": ["step_accepted", "failed"]})
    assert patched.status_code == 200 and patched.json()["events"] == ["failed", "step_accepted"]
    listed = (await client.get("/delivery/webhooks")).json()
    assert [(w["endpoint_id"], w["events"]) for w in listed] == [(created["endpoint_id"], ["failed", "step_accepted"])]
    assert (await client.delete(f"/delivery/webhooks/{created['endpoint_id']}")).status_code == 204
    assert (await client.get("/delivery/webhooks")).json() == []
    again = await client.post("/delivery/webhooks", headers={"Idempotency-Key": "k1"},
                              json={"url": receiver.url_for("managed")})
    repeat = await client.post("/delivery/webhooks", headers={"Idempotency-Key": "k1"},
                               json={"url": receiver.url_for("managed")})
    assert again.json() == repeat.json() and len((await client.get("/delivery/webhooks")).json()) == 1


async def test_the_bot_token_is_in_no_event(world: GatewayWorld) -> None:
    rows = await world.gateway.db.fetch("SELECT data::text AS data FROM events WHERE type LIKE 'delivery.%'")
    assert rows and not any(TOKEN in row["data"] or TOKEN.split(":")[1] in row["data"] for row in rows)
    secrets_seen = [json.loads(row["data"]) for row in rows if "whsec_" in row["data"]]
    assert secrets_seen == []

