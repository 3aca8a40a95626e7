"""Conversations kept on the server, over real NATS and Postgres: the list (latest activity first, per
character), the messages page by page with a cursor, refused messages, ownership, and deleting one
(hidden from its owner and from the chat, kept in the log, still hidden after the views are rebuilt).

The fake chat service answers as the real one records (tests/fakes/gateway_world.py): the user's
message, a picture asked for when the text says "picture", and the reply "You said: ...".
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from contracts import ChatMessageRefused, Envelope
from tests.conftest import Backends
from tests.fakes.gateway_world import GatewayWorld
from tests.integration.gateway_helpers import assert_error, chat

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_anonymous_image_limit=None,
                               gateway_command_timeout_s=5.0, gateway_rate_per_s=1000.0,
                               gateway_rate_burst=1000.0).start()
    await world.chat.builtin("ayla-test", "Ayla")
    await world.chat.builtin("nora-test", "Nora")
    yield world
    await world.close()


async def say(client, text: str, character_id: str = "ayla-test", conversation_id: str | None = None) -> dict:
    """One message and its whole reply; the reply event's data (with its conversation_id)."""
    body = {"character_id": character_id, "text": text}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    events = await chat(client, **body)
    assert events[-1][0] == "reply", events
    return events[-1][1]


async def test_the_list_is_ones_own_conversations_latest_activity_first(world: GatewayWorld, alice, bob) -> None:
    first = (await say(alice, "hello"))["conversation_id"]
    second = (await say(alice, "hi Nora", "nora-test"))["conversation_id"]
    await say(alice, "I am back", conversation_id=first)

    listed = (await alice.get("/conversations")).json()
    assert [c["conversation_id"] for c in listed] == [first, second]
    top = listed[0]
    assert top["character_id"] == "ayla-test" and top["message_count"] == 4
    assert top["last_message"]["role"] == "character" and top["last_message"]["preview"] == "You said: I am back"
    assert top["last_message"]["refused"] is False
    assert top["started_at"] <= top["last_message_at"]
    assert top["messages_url"] == f"/conversations/{first}/messages"
    assert listed[1]["message_count"] == 2 and listed[1]["character_id"] == "nora-test"

    only_nora = (await alice.get("/conversations", params={"character_id": "nora-test"})).json()
    assert [c["conversation_id"] for c in only_nora] == [second]
    paged = (await alice.get("/conversations", params={"limit": 1, "offset": 1})).json()
    assert [c["conversation_id"] for c in paged] == [second]
    assert (await bob.get("/conversations")).json() == []
    assert_error(await alice.get("/conversations", params={"limit": 0}), 422, "invalid_request")
    assert_error(await alice.get("/conversations", params={"offset": -1}), 422, "invalid_request")


async def test_a_long_message_is_previewed_cut_short(world: GatewayWorld, alice) -> None:
    long = "word " * 100
    conversation = (await say(alice, long.strip(), "nora-test"))["conversation_id"]
    listed = {c["conversation_id"]: c for c in (await alice.get("/conversations")).json()}
    preview = listed[conversation]["last_message"]["preview"]
    assert len(preview) == 140 and preview.endswith("…") and preview.startswith("You said: word word")


async def test_messages_come_newest_page_first_oldest_to_newest_within_a_page(world: GatewayWorld, alice) -> None:
    conversation = (await say(alice, "one"))["conversation_id"]
    picture = await say(alice, "send me a picture at the beach", conversation_id=conversation)
    await say(alice, "three", conversation_id=conversation)

    newest = (await alice.get(f"/conversations/{conversation}/messages", params={"limit": 4})).json()
    assert newest["conversation_id"] == conversation and newest["character_id"] == "ayla-test"
    texts = [m["text"] for m in newest["messages"]]
    assert texts == ["send me a picture at the beach", "You said: send me a picture at the beach", "three",
                     "You said: three"]
    asked, answer = newest["messages"][0], newest["messages"][1]
    assert asked["role"] == "user" and asked["chain_id"] == picture["chain_id"] and asked["refused"] is False
    assert answer["role"] == "character" and answer["in_reply_to"] == asked["message_id"]
    assert answer["chain_id"] == picture["chain_id"] and answer["model"] == "fake-model"
    assert answer["offline"] is False and answer["needs_reference"] is False and answer["login_required"] is False
    assert newest["messages"][2]["chain_id"] is None
    assert newest["before"] is not None
    assert newest["next"] == f"/conversations/{conversation}/messages?limit=4&before={newest['before']}"

    older = (await alice.get(newest["next"])).json()
    assert [m["text"] for m in older["messages"]] == ["one", "You said: one"]
    assert older["before"] is None and older["next"] is None
    everything = (await alice.get(f"/conversations/{conversation}/messages")).json()["messages"]
    assert [m["message_id"] for m in everything] == [m["message_id"] for m in older["messages"] + newest["messages"]]
    assert_error(await alice.get(f"/conversations/{conversation}/messages", params={"before": "soon"}), 422,
                 "invalid_request")
    assert_error(await alice.get(f"/conversations/{conversation}/messages", params={"limit": 500}), 422,
                 "invalid_request")


async def test_a_refused_message_shows_its_reason_and_others_refusals_do_not_show(world: GatewayWorld, alice,
                                                                                 bob) -> None:
    conversation = (await say(alice, "hello"))["conversation_id"]
    world.chat.refuse_chat = "chat.other_character"
    try:
        events = await chat(alice, character_id="ayla-test", text="hi", conversation_id=conversation)
    finally:
        world.chat.refuse_chat = None
    assert events[-1][0] == "error"
    # Someone else addressing her conversation id directly on the bus: the chat service refuses it there.
    stream = f"conversation-{conversation}"
    intruder = ChatMessageRefused(conversation_id=uuid.UUID(conversation), message_id=uuid.uuid4(), user_id="bob",
                                  reason="this conversation belongs to another user",
                                  rule="chat.not_your_conversation")
    await world.store.append(stream, await world.store.stream_version(stream), [Envelope.wrap(
        intruder, event_id=uuid.uuid4(), stream=stream, occurred_at=datetime.now(UTC), correlation_id=stream,
        actor="chat")])

    messages = (await alice.get(f"/conversations/{conversation}/messages")).json()["messages"]
    assert [(m["role"], m["text"]) for m in messages] == [("user", "hello"), ("character", "You said: hello"),
                                                          ("user", None)]
    refused = messages[-1]
    assert refused["refused"] is True and refused["refused_reason"] == "refused by the fake"
    assert refused["refused_rule"] == "chat.other_character"
    listed = {c["conversation_id"]: c for c in (await alice.get("/conversations")).json()}[conversation]
    assert listed["message_count"] == 3 and listed["last_message"] == {
        "message_id": refused["message_id"], "role": "user", "preview": None, "refused": True}


async def test_another_users_or_an_unknown_conversation_is_a_404(world: GatewayWorld, alice, bob) -> None:
    conversation = (await say(alice, "hello"))["conversation_id"]
    assert_error(await bob.get(f"/conversations/{conversation}/messages"), 404, "conversation_not_found")
    assert_error(await bob.delete(f"/conversations/{conversation}"), 404, "conversation_not_found")
    assert_error(await alice.get(f"/conversations/{uuid.uuid4()}/messages"), 404, "conversation_not_found")
    assert_error(await alice.delete(f"/conversations/{uuid.uuid4()}"), 404, "conversation_not_found")
    assert_error(await alice.get("/conversations/not-a-uuid/messages"), 422, "invalid_request")
    # Bob's attempt hid nothing.
    assert conversation in {c["conversation_id"] for c in (await alice.get("/conversations")).json()}


async def test_deleting_hides_a_conversation_from_its_owner_while_the_log_keeps_it(world: GatewayWorld,
                                                                                   alice) -> None:
    kept = (await say(alice, "keep this one"))["conversation_id"]
    gone = (await say(alice, "forget this one"))["conversation_id"]
    stream = f"conversation-{gone}"
    logged = [e.envelope.type for e in await world.store.read_stream(stream)]

    deleted = await alice.delete(f"/conversations/{gone}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await alice.delete(f"/conversations/{gone}")).status_code == 204

    def listed(response) -> set[str]:
        return {c["conversation_id"] for c in response.json()}

    assert gone not in listed(await alice.get("/conversations")) and kept in listed(await alice.get("/conversations"))
    assert_error(await alice.get(f"/conversations/{gone}/messages"), 404, "conversation_not_found")
    response = await alice.post("/chat/stream", json={"character_id": "ayla-test", "text": "still there?",
                                                      "conversation_id": gone})
    assert_error(response, 404, "conversation_not_found")
    assert [e.envelope.type for e in await world.store.read_stream(stream)] == logged

    # The views are rebuilt from the log; what the owner hid is not a view, and stays hidden.
    projector = world.gateway.projector
    await projector.rebuild()
    while await projector.run_once():
        pass
    assert gone not in listed(await alice.get("/conversations")) and kept in listed(await alice.get("/conversations"))
    assert_error(await alice.get(f"/conversations/{gone}/messages"), 404, "conversation_not_found")
    assert [m["text"] for m in (await alice.get(f"/conversations/{kept}/messages")).json()["messages"]] == [
        "keep this one", "You said: keep this one"]
