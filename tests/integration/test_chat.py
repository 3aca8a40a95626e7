"""The chat service on real NATS JetStream and Postgres: built-ins, character commands, conversations,
live token deltas, offline and LLM replies (fake OpenAI server over a real socket), pictures in chat."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import (
    REGISTRY,
    ChainCompleted,
    ChainRequested,
    ChatPictureSelected,
    CharacterCreated,
    CharacterReferenceSet,
    CharacterRefused,
    CharacterReplied,
    ChatMessageRefused,
    ConversationStarted,
    CreateCharacter,
    Envelope,
    ImageRef,
    ImageRequestedInChat,
    Message,
    RequestChain,
    SendChatMessage,
    SetCharacterReference,
    UpdatePersona,
    UserMessageSent,
)
from contracts.streams import conversation_stream, user_reference_stream
from contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM, command_subject, live_subject, stream_filter
from services.chat.application import Characters
from services.chat.personas import DATA_DIR, load_personas
from services.chat.service import CHARACTER_CONSUMER, CHAT_CONSUMER, build_runtime
from services.chat.settings import ChatSettings
from services.runtime.blobs import BlobStore
from services.runtime.eventstore import EventStore
from services.runtime.runner import Runtime
from tests.conftest import Backends
from tests.runtimes import running
from tests.factories import wrap
from tests.faces import face_of
from tests.fakes.openai_server import MODES, FakeOpenAI, Reply

pytestmark = pytest.mark.integration

BUILTINS = [p.id for p in load_personas().personas]


@pytest.fixture(scope="module", autouse=True)
async def forget_durables(backends: Backends) -> AsyncIterator[None]:
    yield
    nc = await nats.connect(backends.nats_url, connect_timeout=5)
    for durable in (CHARACTER_CONSUMER, CHAT_CONSUMER):
        try:
            await nc.jetstream().delete_consumer(COMMANDS_STREAM, durable)
        except nats.js.errors.NotFoundError:
            pass
    await nc.drain()


@asynccontextmanager
async def chat_service(backends: Backends, **extra) -> AsyncIterator[Runtime]:
    """The chat runtime in this process; yields once its start-up hooks (the built-ins) have run."""
    settings = ChatSettings(nats_url=backends.nats_url, database_url=backends.database_url, environment="test",
                            ack_wait_s=10.0, retry_delay_s=0.2, max_deliver=3, graceful_timeout_s=5.0,
                            chat_offline_delay_s=0.0, chat_workers=1, **extra)
    async with running(build_runtime(settings), start_timeout_s=30) as rt:
        yield rt


async def send(js, message: Message, stream: str, *, actor: str = "u1") -> Envelope:
    """Publish a command as the gateway would, in an envelope with a fresh event id."""
    envelope = Envelope.wrap(message, event_id=uuid.uuid4(), stream=stream, occurred_at=datetime.now(UTC),
                             correlation_id=stream, actor=actor)
    await js.publish(command_subject(message.type), envelope.to_bytes(),
                     headers={"Nats-Msg-Id": str(envelope.event_id)})
    return envelope


@asynccontextmanager
async def follow(js, family: str, stream: str) -> AsyncIterator[Callable]:
    """The stream's events as JetStream delivers them (what the gateway waits on); `until(pred)` collects."""
    sub = await js.pull_subscribe(stream_filter(family, stream), durable=None, stream=EVENTS_STREAM,
                                  config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL))
    seen: list[Envelope] = []

    async def until(done: Callable[[list[Envelope]], bool], timeout: float = 20.0) -> list[Envelope]:
        async with asyncio.timeout(timeout):
            while not done(seen):
                try:
                    seen.extend(Envelope.from_bytes(m.data) for m in await sub.fetch(20, timeout=0.5))
                except nats.errors.TimeoutError:
                    pass
        return list(seen)

    try:
        yield until
    finally:
        await sub.unsubscribe()


def has(type_: str, count: int = 1) -> Callable[[list[Envelope]], bool]:
    return lambda envelopes: sum(e.type == type_ for e in envelopes) >= count


def opened(envelopes: list[Envelope]) -> list[Message]:
    return [e.open(REGISTRY) for e in envelopes]


async def create_character(js, *, owner: str = "u1", reference: ImageRef | None = None) -> tuple[str, Envelope]:
    character_id = f"c-{uuid.uuid4().hex[:12]}"
    command = CreateCharacter(character_id=character_id, name="Ada", gender="woman", personality="curious",
                              occupation="engineer", persona="You are Ada, an engineer who loves puzzles.",
                              art_style="photoreal", owner=owner, reference_image=reference)
    async with follow(js, "character", f"character-{character_id}") as until:
        envelope = await send(js, command, f"character-{character_id}", actor=owner)
        await until(has("character.created"))
    return character_id, envelope


async def test_builtins_are_recorded_once_even_when_two_replicas_start(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    async with AsyncExitStack() as replicas:
        # Both replicas seed at the same time: one appends, the other's expected version fails and re-reads.
        await asyncio.gather(*(replicas.enter_async_context(chat_service(backends)) for _ in range(2)))
    async with chat_service(backends):
        pass
    for character_id in BUILTINS:
        (recorded,) = await store.read_stream(f"character-{character_id}")
        created = recorded.envelope.open(REGISTRY)
        assert isinstance(created, CharacterCreated) and created.builtin and created.owner is None
        assert recorded.envelope.actor == "chat" and recorded.envelope.seq == 1

    # A release that rewrites a built-in persona records the change once; going back records that too.
    original = json.loads((DATA_DIR / "personas.json").read_text())
    edited = copy.deepcopy(original)
    edited["personas"][0]["persona"] += " She has started painting, too."
    (tmp_path / "personas.json").write_text(json.dumps(edited))
    for _ in range(2):
        async with chat_service(backends, chat_personas_file=tmp_path / "personas.json"):
            pass
    async with chat_service(backends):
        pass
    luna = [r.envelope.open(REGISTRY) for r in await store.read_stream("character-luna")]
    assert [type(e).__name__ for e in luna] == ["CharacterCreated", "CharacterPersonaUpdated",
                                                "CharacterPersonaUpdated"]
    assert luna[1].persona.endswith("painting, too.") and luna[2].persona == original["personas"][0]["persona"]


async def test_replicas_seeding_at_once_record_each_character_once(engine, store: EventStore) -> None:
    # Replicas derive the same event ids for the same seed, so the loser's append is recognised as done.
    book = load_personas()
    suffix = uuid.uuid4().hex[:8]
    personas = [p.model_copy(update={"id": f"{p.id}-{suffix}"}) for p in book.personas]
    replicas = [Characters(EventStore(engine), lambda: datetime.now(UTC)) for _ in range(3)]
    changed = await asyncio.gather(*(replica.seed(personas) for replica in replicas))
    assert sum(changed) == len(personas)
    for persona in personas:
        assert len(await store.read_stream(f"character-{persona.id}")) == 1


async def test_character_commands_are_answered_with_an_event_caused_by_them(
    backends: Backends, nc: nats.NATS, store: EventStore
) -> None:
    js = nc.jetstream(timeout=5)
    reference = ImageRef(sha256="cd" * 32, media_type="image/png", width=256, height=256, bytes=1234)
    async with chat_service(backends):
        character_id, create = await create_character(js, reference=reference)
        stream = f"character-{character_id}"
        async with follow(js, "character", stream) as until:
            events = await until(has("character.reference_set"))
            assert [e.type for e in events] == ["character.created", "character.reference_set"]
            assert all(e.causation_id == str(create.event_id) and e.actor == "u1" for e in events)
            created, reference_set = opened(events)
            assert created.owner == "u1" and not created.builtin
            assert reference_set == CharacterReferenceSet(character_id=character_id, image=reference)

            # A redelivered command (same envelope, new NATS id) records nothing new ...
            await js.publish(command_subject("character.create"), create.to_bytes(),
                             headers={"Nats-Msg-Id": str(uuid.uuid4())})
            # ... someone else's edit is refused, the owner's is applied (one worker: in this order).
            theirs = await send(js, UpdatePersona(character_id=character_id, persona="x", requested_by="u2"), stream)
            mine = await send(js, UpdatePersona(character_id=character_id, persona="You are Ada, a pilot now.",
                                                occupation="pilot", requested_by="u1"), stream)
            events = await until(has("character.persona_updated"))
        assert [e.type for e in events] == ["character.created", "character.reference_set", "character.refused",
                                            "character.persona_updated"]
        refused, updated = opened(events[2:])
        assert isinstance(refused, CharacterRefused) and refused.rule == "character.not_owner"
        assert events[2].causation_id == str(theirs.event_id) and events[3].causation_id == str(mine.event_id)
        assert updated.occupation == "pilot"
        assert [r.envelope.type for r in await store.read_stream(stream)] == [e.type for e in events]


async def test_an_offline_conversation_streams_deltas_and_records_the_reply(
    backends: Backends, nc: nats.NATS, store: EventStore
) -> None:
    js = nc.jetstream(timeout=5)
    conversation_id, message_id = uuid.uuid4(), uuid.uuid4()
    stream = f"conversation-{conversation_id}"
    deltas: list[Envelope] = []

    async def on_delta(msg) -> None:
        deltas.append(Envelope.from_bytes(msg.data))

    live = await nc.subscribe(live_subject("chat.token_delta", stream), cb=on_delta)
    message = SendChatMessage(conversation_id=conversation_id, character_id="aria", user_id="u1", text="hi Aria!",
                              message_id=message_id)
    async with chat_service(backends), follow(js, "chat", stream) as until:
        sent = await send(js, message, stream)
        events = await until(has("chat.character_replied"))
        # The same message again (a resend) and someone else's message: nothing answered twice, one refusal.
        await send(js, message, stream)
        intruder = await send(js, message.model_copy(update={"user_id": "u2", "message_id": uuid.uuid4()}), stream,
                              actor="u2")
        events = await until(has("chat.message_refused"))
    await live.unsubscribe()
    assert [e.type for e in events] == ["chat.conversation_started", "chat.user_message_sent",
                                        "chat.character_replied", "chat.message_refused"]
    started, said, replied, refused = opened(events)
    assert started == ConversationStarted(conversation_id=conversation_id, character_id="aria", user_id="u1")
    assert said == UserMessageSent(conversation_id=conversation_id, message_id=message_id, text="hi Aria!")
    assert isinstance(replied, CharacterReplied) and replied.offline and replied.model == "offline-persona"
    assert replied.in_reply_to == message_id and replied.user_id == "u1" and replied.cost_usd == 0
    assert replied.text.startswith(load_personas().get("aria").greeting) and "offline" in replied.text
    assert all(e.causation_id == str(sent.event_id) and e.correlation_id == stream for e in events[:3])
    assert isinstance(refused, ChatMessageRefused) and events[3].causation_id == str(intruder.event_id)
    assert "".join(d.open(REGISTRY).delta for d in deltas) == replied.text
    assert {d.open(REGISTRY).message_id for d in deltas} == {replied.message_id}
    assert len(await store.read_stream(stream)) == 4


async def test_an_llm_reply_streams_from_the_fake_openai_server(backends: Backends, nc: nats.NATS) -> None:
    js = nc.jetstream(timeout=5)
    conversation_id = uuid.uuid4()
    stream = f"conversation-{conversation_id}"
    deltas: list[str] = []

    async def on_delta(msg) -> None:
        deltas.append(Envelope.from_bytes(msg.data).open(REGISTRY).delta)

    live = await nc.subscribe(live_subject("chat.token_delta", stream), cb=on_delta)
    answer = "Oh, hi... I was just looking at the light over the river. How are you?"
    with FakeOpenAI([answer], api_key="sk-test") as llm:
        async with chat_service(backends, chat_llm_base_url=llm.url, chat_llm_model="grok-3-mini",
                                chat_llm_api_key="sk-test"), follow(js, "chat", stream) as until:
            await send(js, SendChatMessage(conversation_id=conversation_id, character_id="luna", user_id="u1",
                                           text="Hi Luna, what are you up to?"), stream)
            events = await until(has("chat.character_replied"))
        (request,) = llm.requests
    await live.unsubscribe()
    replied = opened(events)[-1]
    assert replied.text == answer and replied.model == "grok-3-mini" and not replied.offline
    assert replied.prompt_tokens > 0 and replied.completion_tokens == len(answer.split())
    assert replied.cost_usd == round((replied.prompt_tokens * 0.3 + replied.completion_tokens * 0.5) / 1e6, 8)
    assert "".join(deltas) == answer and len(deltas) == len(answer.split())
    assert request["stream"] is True and request["model"] == "grok-3-mini"
    system, user = request["messages"]
    assert system["role"] == "system" and "shy photographer" in system["content"]
    assert user == {"role": "user", "content": "Hi Luna, what are you up to?"}
    assert request["tools"][0]["function"]["name"] == "request_picture"


async def test_a_users_own_persona_of_a_builtin_is_what_the_llm_is_told_in_their_chats_only(
    backends: Backends, nc: nats.NATS, store: EventStore
) -> None:
    js = nc.jetstream(timeout=5)
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    mine = user_reference_stream("luna", alice)
    with FakeOpenAI(["Hi!", "Hello!"], api_key="sk-test") as llm:
        async with chat_service(backends, chat_llm_base_url=llm.url, chat_llm_model="grok-3-mini",
                                chat_llm_api_key="sk-test"):
            async with follow(js, "character", mine) as until:
                await send(js, UpdatePersona(character_id="luna", persona="You are Luna, a daring lighthouse keeper.",
                                             requested_by=alice), "character-luna", actor=alice)
                (answer,) = await until(has("character.persona_updated"))
            assert answer.stream == mine and answer.open(REGISTRY).for_user == alice
            for user in (alice, bob):
                conversation_id = uuid.uuid4()
                stream = conversation_stream(conversation_id)
                async with follow(js, "chat", stream) as until:
                    await send(js, SendChatMessage(conversation_id=conversation_id, character_id="luna", user_id=user,
                                                   text="Hi Luna, what are you up to?"), stream, actor=user)
                    await until(has("chat.character_replied"))
        to_alice, to_bob = (request["messages"][0]["content"] for request in llm.requests)
    assert "daring lighthouse keeper" in to_alice and "shy photographer" not in to_alice
    assert "shy photographer" in to_bob and "lighthouse" not in to_bob


async def test_a_server_that_reports_no_usage_gets_estimated_tokens_marked_as_such(
    backends: Backends, nc: nats.NATS
) -> None:
    js = nc.jetstream(timeout=5)
    conversation_id = uuid.uuid4()
    stream = f"conversation-{conversation_id}"
    answer = "Oh, hi... I was just looking at the light over the river. How are you?"
    with FakeOpenAI([answer], mode="llama-cpp-python") as llm:
        async with chat_service(backends, chat_llm_base_url=llm.url, chat_llm_model="grok-4-fast-non-reasoning"), \
                follow(js, "chat", stream) as until:
            await send(js, SendChatMessage(conversation_id=conversation_id, character_id="luna", user_id="u1",
                                           text="Hi Luna, what are you up to?"), stream)
            events = await until(has("chat.character_replied"))
        (request,) = llm.requests
    replied = opened(events)[-1]
    system_prompt = request["messages"][0]["content"]
    assert replied.tokens_estimated and not replied.offline
    # About four characters a token over the whole prompt (the system prompt alone is hundreds), not a guess of 50.
    assert replied.prompt_tokens >= len(system_prompt) // 4 > 50
    # Billed at grok-4-fast's own price, not grok-4's.
    assert replied.cost_usd == round((replied.prompt_tokens * 0.2 + replied.completion_tokens * 0.5) / 1e6, 8)


@pytest.fixture
async def chain_requests(nc: nats.NATS) -> AsyncIterator:
    """A test durable on the chain request subject (the commands stream is a work queue: deleted after)."""
    js = nc.jetstream(timeout=5)
    durable = f"test-chat-chains-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(command_subject("chain.request"), durable=durable, stream=COMMANDS_STREAM,
                                  config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                                        deliver_policy=DeliverPolicy.ALL))
    yield sub
    await sub.unsubscribe()
    await js.delete_consumer(COMMANDS_STREAM, durable)


async def test_a_picture_asked_for_in_chat_requests_a_chain(
    backends: Backends, nc: nats.NATS, chain_requests
) -> None:
    js = nc.jetstream(timeout=5)
    blobs = await BlobStore.open(js)
    reference = await blobs.put_image(face_of(0))
    conversation_id, message_id = uuid.uuid4(), uuid.uuid4()
    stream = f"conversation-{conversation_id}"
    async with chat_service(backends):
        character_id, _ = await create_character(js, reference=reference)
        async with follow(js, "chat", stream) as until:
            sent = await send(js, SendChatMessage(conversation_id=conversation_id, character_id=character_id,
                                                  user_id="u1", text="send me a picture of you at the beach",
                                                  message_id=message_id), stream)
            events = await until(has("chat.character_replied"))
        (msg,) = await chain_requests.fetch(1, timeout=10)
        await msg.ack()
    assert [e.type for e in events] == ["chat.conversation_started", "chat.user_message_sent",
                                        "chat.image_requested", "chat.character_replied"]
    requested, replied = opened(events[2:])
    assert isinstance(requested, ImageRequestedInChat) and requested.request_text == "at the beach"
    assert requested.message_id == message_id and replied.chain_id == requested.chain_id
    assert "at the beach" in replied.text and not replied.needs_reference
    envelope = Envelope.from_bytes(msg.data)
    command = envelope.open(REGISTRY)
    assert command == RequestChain(chain_id=requested.chain_id, character_id=character_id, user_id="u1",
                                   request_text="at the beach", reference_image=reference)
    assert envelope.causation_id == str(sent.event_id) and envelope.correlation_id == f"chain-{requested.chain_id}"


async def test_a_follow_up_in_chat_edits_the_last_accepted_picture_and_go_back_picks_the_one_before(
    backends: Backends, nc: nats.NATS, chain_requests, store: EventStore
) -> None:
    js = nc.jetstream(timeout=5)
    blobs = await BlobStore.open(js)
    reference = await blobs.put_image(face_of(0))
    conversation_id = uuid.uuid4()
    stream = f"conversation-{conversation_id}"

    async def say(text: str, replies: int) -> RequestChain | None:
        await send(js, SendChatMessage(conversation_id=conversation_id, character_id=character_id, user_id="u1",
                                       text=text), stream)
        await until(has("chat.character_replied", replies))
        try:
            (msg,) = await chain_requests.fetch(1, timeout=2)
        except nats.errors.TimeoutError:
            return None
        await msg.ack()
        return Envelope.from_bytes(msg.data).open(REGISTRY)

    async def completed(request: RequestChain, image: ImageRef) -> None:
        # What the planner records for a chain that made its picture (the chat service only reads it).
        chain = f"chain-{request.chain_id}"
        fields = request.model_dump(exclude={"type", "version"})
        await store.append(chain, 0, [wrap(ChainRequested(**fields), chain),
                                      wrap(ChainCompleted(chain_id=request.chain_id, final_image=image,
                                                          step_images=(image, image)), chain)])

    first_image, second_image = await blobs.put_image(face_of(1)), await blobs.put_image(face_of(2))
    async with chat_service(backends):
        character_id, _ = await create_character(js, reference=reference)
        async with follow(js, "chat", stream) as until:
            first = await say("send me a picture of you at the beach", 1)
            assert first is not None and first.input_image is None
            await completed(first, first_image)
            second = await say("now make her wave", 2)
            assert second is not None
            assert (second.request_text, second.parent_chain_id, second.branch_from_step, second.input_image) == (
                "make her wave", first.chain_id, 1, first_image)
            await completed(second, second_image)
            assert await say("go back to the previous picture", 3) is None
            third = await say("now put her in a red dress", 4)
            events = await until(has("chat.character_replied", 4))
    assert third is not None and third.parent_chain_id == first.chain_id and third.input_image == first_image
    (picked,) = [m for m in opened(events) if isinstance(m, ChatPictureSelected)]
    assert picked.chain_id == first.chain_id


async def test_without_a_reference_photo_no_chain_is_requested(
    backends: Backends, nc: nats.NATS, chain_requests
) -> None:
    js = nc.jetstream(timeout=5)
    conversation_id = uuid.uuid4()
    stream = f"conversation-{conversation_id}"
    async with chat_service(backends), follow(js, "chat", stream) as until:
        await send(js, SendChatMessage(conversation_id=conversation_id, character_id="ivy", user_id="u1",
                                       text="can you send me a selfie?"), stream)
        events = await until(has("chat.character_replied"))
    assert [e.type for e in events] == ["chat.conversation_started", "chat.user_message_sent",
                                        "chat.character_replied"]
    replied = opened(events)[-1]
    assert replied.needs_reference and replied.chain_id is None and "reference photo" in replied.text
    with pytest.raises(nats.errors.TimeoutError):
        await chain_requests.fetch(1, timeout=1.0)


async def test_a_builtin_characters_reference_is_the_senders_own(
    backends: Backends, nc: nats.NATS, store: EventStore, chain_requests
) -> None:
    js = nc.jetstream(timeout=5)
    blobs = await BlobStore.open(js)
    reference = await blobs.put_image(face_of(1))
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    mine = user_reference_stream("luna", alice)
    async with chat_service(backends):
        luna_before = [r.envelope.type for r in await store.read_stream("character-luna")]
        async with follow(js, "character", mine) as until:
            command = await send(js, SetCharacterReference(character_id="luna", image=reference, requested_by=alice),
                                 "character-luna", actor=alice)
            (answer,) = await until(has("character.reference_set"))
        assert answer.stream == mine and answer.causation_id == str(command.event_id)
        assert answer.open(REGISTRY) == CharacterReferenceSet(character_id="luna", image=reference, for_user=alice)
        # Luna's own stream is untouched: her face is Alice's alone.
        assert [r.envelope.type for r in await store.read_stream("character-luna")] == luna_before

        replies = {}
        for user in (alice, bob):
            conversation_id = uuid.uuid4()
            stream = conversation_stream(conversation_id)
            async with follow(js, "chat", stream) as until:
                await send(js, SendChatMessage(conversation_id=conversation_id, character_id="luna", user_id=user,
                                               text="send me a picture of you at the beach"), stream, actor=user)
                replies[user] = opened(await until(has("chat.character_replied")))[-1]
        (msg,) = await chain_requests.fetch(1, timeout=10)
        await msg.ack()
        with pytest.raises(nats.errors.TimeoutError):
            await chain_requests.fetch(1, timeout=1.0)
    request = Envelope.from_bytes(msg.data).open(REGISTRY)
    assert request.user_id == alice and request.reference_image == reference
    assert replies[alice].chain_id == request.chain_id and not replies[alice].needs_reference
    assert replies[bob].needs_reference and replies[bob].chain_id is None


async def test_a_sender_past_the_picture_limit_gets_no_chain_and_is_told_to_log_in(
    backends: Backends, nc: nats.NATS, chain_requests
) -> None:
    js = nc.jetstream(timeout=5)
    blobs = await BlobStore.open(js)
    reference = await blobs.put_image(face_of(0))
    conversation_id = uuid.uuid4()
    stream = conversation_stream(conversation_id)
    async with chat_service(backends):
        character_id, _ = await create_character(js, reference=reference)
        async with follow(js, "chat", stream) as until:
            await send(js, SendChatMessage(conversation_id=conversation_id, character_id=character_id, user_id="u1",
                                           text="send me a picture of you at the beach", pictures_allowed=False),
                       stream)
            events = await until(has("chat.character_replied"))
    assert [e.type for e in events] == ["chat.conversation_started", "chat.user_message_sent",
                                        "chat.character_replied"]
    replied = opened(events)[-1]
    assert replied.login_required and replied.chain_id is None and "log in" in replied.text.lower()
    with pytest.raises(nats.errors.TimeoutError):
        await chain_requests.fetch(1, timeout=1.0)


@pytest.mark.parametrize(("mode", "quirks"), [*((mode, ()) for mode in MODES), ("well-behaved", ("no_tools",))],
                         ids=[*MODES, "no-tools"])
async def test_a_plain_reply_holds_against_each_servers_quirks(
    mode: str, quirks: tuple[str, ...], backends: Backends, nc: nats.NATS
) -> None:
    js = nc.jetstream(timeout=5)
    conversation_id = uuid.uuid4()
    stream = f"conversation-{conversation_id}"
    answer = "Oh, hi... just sorting prints from the river walk. You?"
    with FakeOpenAI([answer, answer], mode=mode, quirks=quirks) as llm:
        async with chat_service(backends, chat_llm_base_url=llm.url, chat_llm_model="fake-model"), \
                follow(js, "chat", stream) as until:
            await send(js, SendChatMessage(conversation_id=conversation_id, character_id="luna", user_id="u1",
                                           text="Hi Luna, what are you up to?"), stream)
            events = await until(has("chat.character_replied"))
        requests = llm.requests
    replied = opened(events)[-1]
    assert replied.text == answer and not replied.offline
    assert replied.tokens_estimated == ("no_usage" in llm.quirks)
    # A server without tools is asked again without them; any other answers the first request.
    assert len(requests) == (2 if "no_tools" in llm.quirks else 1) and "tools" in requests[0]


@pytest.mark.parametrize("mode", ["well-behaved", "llama-server-1-slot", "llama-cpp-python"],
                         ids=["native tool call", "call in <tool_call> tags", "call as bare JSON"])
async def test_a_picture_the_model_asks_for_starts_a_chain_and_no_call_is_ever_shown(
    mode: str, backends: Backends, nc: nats.NATS, chain_requests
) -> None:
    js = nc.jetstream(timeout=5)
    reference = await (await BlobStore.open(js)).put_image(face_of(0))
    conversation_id = uuid.uuid4()
    stream = f"conversation-{conversation_id}"
    deltas: list[str] = []

    async def on_delta(msg) -> None:
        deltas.append(Envelope.from_bytes(msg.data).open(REGISTRY).delta)

    scene = "on a mountain trail at sunrise"
    script = [Reply.tool("request_picture", {"request": scene}, content="Ooh, hold on!"),
              "Say cheese... it is on its way!"]
    live = await nc.subscribe(live_subject("chat.token_delta", stream), cb=on_delta)
    with FakeOpenAI(script, mode=mode) as llm:
        async with chat_service(backends, chat_llm_base_url=llm.url, chat_llm_model="fake-model"):
            character_id, _ = await create_character(js, reference=reference)
            async with follow(js, "chat", stream) as until:
                await send(js, SendChatMessage(conversation_id=conversation_id, character_id=character_id,
                                               user_id="u1", text="I bet you are great at hiking"), stream)
                events = await until(has("chat.character_replied"))
            (msg,) = await chain_requests.fetch(1, timeout=10)
            await msg.ack()
        requests = llm.requests
    await live.unsubscribe()
    requested = next(m for m in opened(events) if isinstance(m, ImageRequestedInChat))
    replied = opened(events)[-1]
    assert requested.request_text == scene and replied.chain_id == requested.chain_id
    assert replied.text == "Say cheese... it is on its way!"
    assert Envelope.from_bytes(msg.data).open(REGISTRY).request_text == scene
    shown = "".join(deltas)
    assert "request_picture" not in shown and "{" not in shown and "<" not in shown
    first, second = requests
    assert "tools" in first and "tools" not in second and f"({scene})" in second["messages"][0]["content"]


async def test_a_wish_in_other_words_is_caught_by_one_short_question_before_the_reply(
    backends: Backends, nc: nats.NATS, chain_requests
) -> None:
    js = nc.jetstream(timeout=5)
    reference = await (await BlobStore.open(js)).put_image(face_of(0))
    conversation_id = uuid.uuid4()
    stream = f"conversation-{conversation_id}"

    def weak_model(body: dict) -> Reply:
        # A small model asked the yes/no question answers in prose around its JSON, as they do.
        if not body.get("stream"):
            return Reply('Sure! {"picture": true, "scene": "in a winter coat in the snow"}')
        return Reply("Brr, bundling up for you now!")

    with FakeOpenAI(responder=weak_model, mode="bare") as llm:
        async with chat_service(backends, chat_llm_base_url=llm.url, chat_llm_model="fake-model"):
            character_id, _ = await create_character(js, reference=reference)
            async with follow(js, "chat", stream) as until:
                await send(js, SendChatMessage(
                    conversation_id=conversation_id, character_id=character_id, user_id="u1",
                    text="I wish I could see how you look in a winter coat in the snow"), stream)
                events = await until(has("chat.character_replied"))
            (msg,) = await chain_requests.fetch(1, timeout=10)
            await msg.ack()
        question, reply = llm.requests
    requested = next(m for m in opened(events) if isinstance(m, ImageRequestedInChat))
    replied = opened(events)[-1]
    assert requested.request_text == "in a winter coat in the snow" and replied.chain_id == requested.chain_id
    assert not question.get("stream") and question["max_tokens"] == 60
    assert "tools" not in reply and "(in a winter coat in the snow)" in reply["messages"][0]["content"]
    # Both calls are in the reply's tokens, estimated (the server sent no usage) and marked so.
    assert replied.tokens_estimated and replied.prompt_tokens > len(reply["messages"][0]["content"]) // 4
