"""Fakes for tests and benchmarks of the gateway, over real NATS and Postgres (test code: never shipped).

    RunningGateway  the gateway service (its real Runtime) in this process, on a free port
    (and the planner's catalog answers, from its real registries)
    Relay           an outbox relay in this process, woken by every append of a given store
    FakeFacecheck   answers likeness.rpc.face.check_reference: ok, unless the image is marked faceless
    FakeChat        answers character commands with chat's own pure rules, and chat messages the way
                    the chat service does: events appended to the log (causation = the command),
                    token deltas live
    ChainScript     writes a chain's events into the log one at a time, as the planner would

The fakes speak the real protocol (subjects, envelopes, the events table); only the decisions are
canned. They observe commands with core-NATS subscriptions and `purge_commands` empties the
commands stream afterwards, so no durable consumer created later in the same session sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import httpx
import nats
from nats.aio.msg import Msg
from PIL import Image

from contracts import (
    REGISTRY,
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainRequested,
    CharacterCreated,
    CharacterReplied,
    ChatMessageRefused,
    ChatTokenDelta,
    ConversationStarted,
    CreateCharacter,
    Envelope,
    ImageRef,
    ImageRequestedInChat,
    Message,
    ModelUsage,
    PlannedStep,
    SendChatMessage,
    SetCharacterReference,
    StepAccepted,
    StepRendered,
    StepRequested,
    StepScored,
    UpdatePersona,
    UserMessageSent,
)
from contracts.streams import character_stream
from contracts.subjects import COMMANDS_STREAM, PREFIX, live_subject, rpc_subject
from services.chat.domain import characters as character_rules
from services.gateway.app import build_runtime
from services.planner.catalog import catalog_of
from services.planner.catalog import serve as serve_catalog
from services.planner.planning.registry import Registry
from services.gateway.context import Gateway
from services.gateway.settings import GatewaySettings
from services.runtime.blobs import BlobStore
from services.launcher.embedded import free_port
from services.runtime.eventstore import EventStore
from services.runtime.outbox import OutboxRelay
from services.runtime.runner import Runtime

__all__ = [
    "ChainScript",
    "FakeChat",
    "FakeFacecheck",
    "GatewayWorld",
    "Relay",
    "RunningGateway",
    "png",
    "purge_commands",
]


def _now() -> datetime:
    return datetime.now(UTC)


def png(colour: tuple[int, int, int], size: int = 96) -> bytes:
    image = Image.new("RGB", (size, size), colour)
    for x in range(0, size, 8):
        image.putpixel((x, x), (255 - colour[0], 255 - colour[1], 255 - colour[2]))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class RunningGateway:
    """The gateway service in this process: `await RunningGateway(settings).start()`, then `.url`."""

    def __init__(self, settings: GatewaySettings) -> None:
        if settings.http_port == 0:
            settings = settings.model_copy(update={"http_port": free_port()})
        self.settings = settings
        self.url = f"http://{settings.http_host}:{settings.http_port}"
        self.runtime: Runtime = build_runtime(settings)
        self._task: asyncio.Task | None = None

    @property
    def gateway(self) -> Gateway:
        return self.runtime.app.state.gateway

    async def start(self, timeout_s: float = 30.0) -> RunningGateway:
        self._task = asyncio.ensure_future(self.runtime.run())
        async with httpx.AsyncClient(timeout=2.0) as client:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("the gateway stopped during start-up")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return self
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"the gateway was not ready within {timeout_s}s")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.runtime.request_stop()
        if self._task is not None:
            await asyncio.wait_for(self._task, 60)


class Relay:
    """An outbox relay in this process, woken after every append of `store`."""

    def __init__(self, database_url: str, js, store: EventStore) -> None:
        self.relay = OutboxRelay(database_url, js, poll_interval_s=0.05)
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        store.on_append(self.relay.wake)

    def start(self) -> Relay:
        self._task = asyncio.ensure_future(self.relay.run(self._stop))
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)


async def purge_commands(nc: nats.NATS) -> None:
    """Drop every command still waiting in the commands stream (the fakes only observed them)."""
    js = nc.jetstream(timeout=5)
    with contextlib.suppress(Exception):
        await js.purge_stream(COMMANDS_STREAM)


class FakeFacecheck:
    """Answers reference checks: one face, unless the image's sha256 is in `faceless`, or `crowds` says how
    many faces it holds (answered as the real service does: ok, the largest face counts), or `answer` says else."""

    def __init__(self, nc: nats.NATS, answer: Callable[[str], dict] | None = None) -> None:
        self._nc = nc
        self.faceless: set[str] = set()
        self.crowds: dict[str, int] = {}
        self.asked: list[str] = []
        self._answer = answer
        self._sub = None

    async def start(self) -> FakeFacecheck:
        self._sub = await self._nc.subscribe(rpc_subject("face.check_reference"), queue="facecheck", cb=self._reply)
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _reply(self, msg: Msg) -> None:
        sha = json.loads(msg.data)["sha256"]
        self.asked.append(sha)
        if self._answer is not None:
            answer = self._answer(sha)
        elif sha in self.faceless:
            answer = {"ok": False, "faces_found": 0, "reason": "no face found"}
        elif sha in self.crowds:
            faces = self.crowds[sha]
            answer = {"ok": True, "faces_found": faces, "reason": f"{faces} faces found; the largest is the "
                                                                  "character's face"}
        else:
            answer = {"ok": True, "faces_found": 1, "reason": None}
        await msg.respond(json.dumps(answer).encode())


class FakeChat:
    """The chat service's side of the protocol, with canned decisions.

    Replies echo the message; a message containing "picture" also asks for one (ImageRequestedInChat).
    Set `silent = True` to let commands go unanswered (timeouts), `refuse_chat` to refuse messages,
    `usage_reported = False` to mark replies' tokens as estimated.
    """

    def __init__(self, nc: nats.NATS, store: EventStore, *, model: str = "fake-model") -> None:
        self._nc, self._store, self.model = nc, store, model
        self.commands: list[Envelope] = []
        self.silent = False
        self.refuse_chat: str | None = None
        # False: replies say the server sent no usage (their tokens are estimates).
        self.usage_reported = True
        self._subs: list = []
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> FakeChat:
        for family in ("character", "chat"):
            self._subs.append(await self._nc.subscribe(f"{PREFIX}.cmd.{family}.>", cb=self._on_command))
        return self

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        for task in list(self._tasks):
            await task

    async def builtin(self, character_id: str, name: str) -> None:
        """Seed a built-in character, as chat does at start-up."""
        stream = character_stream(character_id)
        if await self._store.stream_version(stream):
            return
        created = CharacterCreated(character_id=character_id, name=name, gender="woman", personality="warm",
                                   occupation="guide", persona=f"{name} is kind.", art_style="photoreal",
                                   builtin=True)
        await self._store.append(stream, 0, [self._wrap(created, stream, None)])

    def _wrap(self, message: Message, stream: str, cause: Envelope | None) -> Envelope:
        return Envelope.wrap(message, event_id=uuid.uuid4(), stream=stream, occurred_at=_now(), correlation_id=stream,
                             causation_id=None if cause is None else str(cause.event_id), actor="chat")

    async def _on_command(self, msg: Msg) -> None:
        envelope = Envelope.from_bytes(msg.data)
        self.commands.append(envelope)
        if self.silent:
            return
        task = asyncio.ensure_future(self._handle(envelope, envelope.open(REGISTRY)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, envelope: Envelope, command: Message) -> None:
        match command:
            case CreateCharacter() | SetCharacterReference() | UpdatePersona():
                await self._character(envelope, command)
            case SendChatMessage():
                await self._chat(envelope, command)

    async def _character(self, envelope: Envelope, command: character_rules.Trigger) -> None:
        """Answered by chat's own pure character rules, so the fake cannot drift from them."""
        state = character_rules.CharacterState()
        for seq, message in await self._store.replay(character_stream(command.character_id), REGISTRY):
            state = character_rules.evolve(state, message, seq)
        stream = character_rules.stream_of(state, command)
        version = await self._store.stream_version(stream)
        events = character_rules.decide(state, command)
        await self._store.append(stream, version, [self._wrap(e, stream, envelope) for e in events])

    async def _chat(self, envelope: Envelope, command: SendChatMessage) -> None:
        stream = f"conversation-{command.conversation_id}"
        version = await self._store.stream_version(stream)
        message_id = command.message_id or uuid.uuid4()
        if self.refuse_chat:
            refused = ChatMessageRefused(conversation_id=command.conversation_id, message_id=message_id,
                                         user_id=command.user_id, reason="refused by the fake", rule=self.refuse_chat)
            await self._store.append(stream, version, [self._wrap(refused, stream, envelope)])
            return
        batch = []
        if version == 0:
            batch.append(self._wrap(ConversationStarted(conversation_id=command.conversation_id,
                                                        character_id=command.character_id,
                                                        user_id=command.user_id), stream, envelope))
        batch.append(self._wrap(UserMessageSent(conversation_id=command.conversation_id, message_id=message_id,
                                                text=command.text), stream, envelope))
        version = (await self._store.append(stream, version, batch)).stream_version
        reply_id = uuid.uuid4()
        text = f"You said: {command.text}"
        for index, word in enumerate(text.split(" ")):
            delta = ChatTokenDelta(conversation_id=command.conversation_id, message_id=reply_id,
                                   delta=word if index == 0 else f" {word}", in_reply_to=message_id, index=index)
            await self._nc.publish(live_subject(delta.type, stream), self._wrap(delta, stream, envelope).to_bytes())
            await asyncio.sleep(0.005)
        batch = []
        chain_id = None
        login_required = "picture" in command.text and not command.pictures_allowed
        if "picture" in command.text and command.pictures_allowed:
            chain_id = uuid.uuid4()
            batch.append(self._wrap(ImageRequestedInChat(conversation_id=command.conversation_id,
                                                         message_id=message_id, chain_id=chain_id,
                                                         request_text=command.text), stream, envelope))
        words = len(text.split())
        batch.append(self._wrap(CharacterReplied(
            conversation_id=command.conversation_id, message_id=reply_id, text=text, model=self.model,
            prompt_tokens=10 * words, completion_tokens=words, cost_usd=0.001 * words, in_reply_to=message_id,
            tokens_estimated=not self.usage_reported,
            user_id=command.user_id, character_id=command.character_id, chain_id=chain_id,
            login_required=login_required), stream, envelope))
        await self._store.append(stream, version, batch)


class ChainScript:
    """A chain written into the log step by step, as the planner would: `await script.advance()`.

    The plan has `steps` steps; each is requested, rendered (a real image in the blob store), scored
    and accepted; then the chain completes (or, with `fail_at`, fails at that step).
    """

    def __init__(self, store: EventStore, blobs: BlobStore, *, user_id: str, character_id: str,
                 reference: ImageRef, steps: int = 2, chain_id: UUID | None = None, request_text: str = "on a beach",
                 parent_chain_id: UUID | None = None, branch_from_step: int | None = None,
                 fail_at: int | None = None, seed: int = 1234, llm_usage: ModelUsage | None = None) -> None:
        self.store, self.blobs = store, blobs
        self.chain_id = chain_id or uuid.uuid4()
        self.stream = f"chain-{self.chain_id}"
        self.user_id, self.character_id, self.reference = user_id, character_id, reference
        self.steps, self.request_text, self.fail_at, self.seed = steps, request_text, fail_at, seed
        self.parent_chain_id, self.branch_from_step = parent_chain_id, branch_from_step
        self.llm_usage = llm_usage
        self.version = 0
        self.images: list[ImageRef] = []
        self.commit_times: dict[int, float] = {}
        self._pending: list[Callable[[], Message]] | None = None

    async def _plan(self) -> list[Callable[[], Message]]:
        cid = self.chain_id
        planned = tuple(PlannedStep(index=i, kind=("background", "outfit", "pose")[i % 3], prompt=f"step {i}",
                                    width=512, height=512, seed=self.seed + i, model="qwen", template="qwen_edit",
                                    steps=8, cfg=1.0) for i in range(self.steps))
        script: list[Callable[[], Message]] = [
            lambda: ChainRequested(chain_id=cid, character_id=self.character_id, user_id=self.user_id,
                                   request_text=self.request_text, reference_image=self.reference,
                                   parent_chain_id=self.parent_chain_id, branch_from_step=self.branch_from_step),
            lambda: ChainPlanned(chain_id=cid, steps=planned, planner="llm" if self.llm_usage else "rules",
                                 threshold=40.0, llm_usage=self.llm_usage),
        ]
        for i in range(self.steps):
            image = await self.blobs.put_image(png((40 * i % 255, 90, (hash(cid) + 37 * i) % 255)))
            self.images.append(image)
            source = self.images[i - 1] if i else self.reference
            script += [
                lambda i=i, source=source: StepRequested(chain_id=cid, step=i, attempt=1, seed=self.seed + i,
                                                         input_image=source),
                lambda i=i, image=image: StepRendered(chain_id=cid, step=i, attempt=1, image=image,
                                                      workflow_hash="f" * 16, backend="fake", engine="draft"),
                lambda i=i: StepScored(chain_id=cid, step=i, attempt=1, score=80.0 - i, faces_found=1,
                                       threshold=40.0),
            ]
            if self.fail_at == i:
                script.append(lambda i=i: ChainFailed(chain_id=cid, step=i, reason="scripted failure"))
                return script
            script.append(lambda i=i, image=image: StepAccepted(chain_id=cid, step=i, attempt=1, image=image,
                                                                score=80.0 - i))
        script.append(lambda: ChainCompleted(chain_id=cid, final_image=self.images[-1],
                                             step_images=tuple(self.images)))
        return script

    async def length(self) -> int:
        if self._pending is None:
            self._pending = await self._plan()
        return self.version + len(self._pending)

    async def advance(self, count: int = 1) -> int:
        """Append the next `count` events (one transaction each); the stream's version after."""
        if self._pending is None:
            self._pending = await self._plan()
        loop = asyncio.get_running_loop()
        for _ in range(count):
            if not self._pending:
                break
            message = self._pending.pop(0)()
            envelope = Envelope.wrap(message, event_id=uuid.uuid4(), stream=self.stream, occurred_at=_now(),
                                     correlation_id=self.stream, actor=self.user_id)
            self.version = (await self.store.append(self.stream, self.version, [envelope])).stream_version
            self.commit_times[self.version] = loop.time()
        return self.version

    async def finish(self) -> int:
        return await self.advance(10_000)


class GatewayWorld:
    """Everything an API test needs around one gateway: NATS, the log, blobs, a relay and the fakes."""

    def __init__(self, nats_url: str, database_url: str, **settings: object) -> None:
        self.nats_url, self.database_url = nats_url, database_url
        self.settings = GatewaySettings(service_name="gateway", environment="test", nats_url=nats_url,
                                        database_url=database_url, http_host="127.0.0.1", **settings)

    async def start(self) -> GatewayWorld:
        from services.runtime.database import create_engine
        from services.runtime.streams import ensure_streams

        self.nc = await nats.connect(self.nats_url, connect_timeout=5)
        await ensure_streams(self.nc.jetstream(timeout=5))
        self.engine = create_engine(self.settings)
        self.store = EventStore(self.engine)
        self.blobs = await BlobStore.open(self.nc.jetstream(timeout=5), settings=self.settings)
        self.relay = Relay(self.database_url, self.nc.jetstream(timeout=5), self.store).start()
        self.facecheck = await FakeFacecheck(self.nc).start()
        self.chat = await FakeChat(self.nc, self.store).start()
        # The planner's catalog answers, from its real registries (the planner itself does not run here).
        self.catalog = await serve_catalog(self.nc, catalog_of(Registry.load()))
        self.running = await RunningGateway(self.settings).start()
        self.url = self.running.url
        return self

    @property
    def gateway(self) -> Gateway:
        return self.running.gateway

    def client(self, **options: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30.0, **options)

    def chain(self, **options: object) -> ChainScript:
        return ChainScript(self.store, self.blobs, **options)

    async def close(self) -> None:
        await self.running.stop()
        await self.chat.stop()
        await self.catalog.unsubscribe()
        await self.facecheck.stop()
        await self.relay.stop()
        await purge_commands(self.nc)
        await self.blobs.close()
        await self.nc.drain()
        await self.engine.dispose()
