"""Contracts: exports, message shape, envelope round trips, decoding errors, upcasting, schemas."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
import typing
from datetime import UTC, datetime
from types import ModuleType
from typing import Literal
from uuid import UUID

import pytest
from pydantic import ValidationError

import contracts
from contracts import (
    REGISTRY,
    AttemptScore,
    BatchCompleted,
    CancelChain,
    ChainCancelled,
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainRefused,
    ChainRequested,
    CharacterCreated,
    CharacterPersonaUpdated,
    CharacterReferenceSet,
    CharacterRefused,
    CharacterReplied,
    CharacterThresholdSet,
    ChatMessageRefused,
    ChatTokenDelta,
    Command,
    ContractError,
    ConversationStarted,
    CreateCharacter,
    Envelope,
    Ephemeral,
    Event,
    FaceBox,
    FaceCheckFailed,
    FaceScored,
    GoldenChainRecorded,
    GoldenStep,
    ImageRef,
    ChatPictureSelected,
    ImageRequestedInChat,
    LoraUse,
    MalformedMessage,
    Message,
    MessageRegistry,
    PlannedStep,
    RenderCompleted,
    RenderFailed,
    RenderPreview,
    RenderProgress,
    RenderStep,
    RenderWaiting,
    RequestChain,
    ScoreFace,
    SendChatMessage,
    SetCharacterReference,
    StepAccepted,
    StepFailed,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
    TraceContext,
    UnknownMessageType,
    UnsupportedVersion,
    UpdatePersona,
    UserMessageSent,
    all_message_types,
)
from contracts.delivery import (
    Deliver,
    DeliveryAttempted,
    DeliveryClaimed,
    DeliveryFailed,
    DeliveryRequested,
    DeliverySucceeded,
    Destination,
    GoogleChatLinked,
    GoogleChatUnlinked,
    TelegramLinked,
    TelegramUnlinked,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookEndpointSubscribed,
    WebhookSecretRotated,
)
from contracts.schemas import export_schemas
from contracts.subjects import command_subject, event_subject, live_subject, rpc_subject

CHAIN = UUID("00000000-0000-4000-8000-000000000001")
CONVERSATION = UUID("00000000-0000-4000-8000-000000000002")
MESSAGE = UUID("00000000-0000-4000-8000-000000000003")
EVENT_ID = UUID("00000000-0000-4000-8000-0000000000ee")
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
FAMILY_MODULES = ("chain", "render", "face", "character", "chat", "delivery", "golden")


DELIVERY = UUID("00000000-0000-4000-8000-0000000000d1")
ENDPOINT = UUID("00000000-0000-4000-8000-0000000000d2")
DELIVERY_SAMPLES: list[Message] = [
    TelegramLinked(user_id="u-1", chat_id="-1001234567890"),
    TelegramUnlinked(user_id="u-1"),
    GoogleChatLinked(user_id="u-1", url="https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t"),
    GoogleChatUnlinked(user_id="u-1"),
    WebhookEndpointCreated(user_id="u-1", endpoint_id=ENDPOINT, url="https://example.com/hooks",
                           events=("completed", "step_accepted")),
    WebhookEndpointSubscribed(user_id="u-1", endpoint_id=ENDPOINT, events=("failed",)),
    WebhookSecretRotated(user_id="u-1", endpoint_id=ENDPOINT, secret_generation=2),
    WebhookEndpointDeleted(user_id="u-1", endpoint_id=ENDPOINT),
    DeliveryRequested(delivery_id=DELIVERY, user_id="u-1", destination=Destination(channel="webhook",
                      endpoint_id=ENDPOINT), event_id=EVENT_ID, event_type="chain.completed", chain_id=CHAIN,
                      message_id=f"msg_{DELIVERY.hex}", requested_at=NOW),
    DeliveryClaimed(delivery_id=DELIVERY, attempt=1, worker="host:12:ab12cd", lease_until=NOW),
    DeliveryAttempted(delivery_id=DELIVERY, attempt=1, worker="host:12:ab12cd", outcome="retry", status_code=503,
                      error="HTTP 503", duration_ms=12.5, retry_at=NOW),
    DeliverySucceeded(delivery_id=DELIVERY, attempts=2),
    DeliveryFailed(delivery_id=DELIVERY, attempts=1, reason="HTTP 400", cause="rejected"),
    Deliver(delivery_id=DELIVERY, attempt=2, not_before=NOW),
]


def image(n: int = 1) -> ImageRef:
    return ImageRef(sha256=f"{n:064x}", media_type="image/png", width=832, height=1216, bytes=1_234_567)


def planned_step(index: int = 0) -> PlannedStep:
    return PlannedStep(
        index=index,
        kind="pose",
        prompt="make her sit on a bench",
        negative_prompt="blurry",
        loras=(LoraUse(name="anime_style", strength=0.8, role="style"),),
        width=832,
        height=1216,
        seed=2**63 + 7,
        model="qwen-image-edit",
        template="edit_v1",
        steps=20,
        cfg=2.5,
        denoise=0.9,
    )


SAMPLES: list[Message] = [
    RequestChain(
        chain_id=CHAIN,
        character_id="mira",
        user_id="u-1",
        request_text="Mira at the beach --count 2",
        reference_image=image(),
        variant_index=1,
        variant_count=2,
    ),
    CancelChain(chain_id=CHAIN, reason="changed my mind", requested_by="u-1"),
    ChainRequested(
        chain_id=CHAIN,
        character_id="mira",
        user_id="u-1",
        request_text="Mira in a red dress",
        reference_image=image(),
        parent_chain_id=UUID(int=9),
        branch_from_step=1,
    ),
    ChainRefused(chain_id=CHAIN, reason="explicit content", rule="content_policy.rating"),
    ChainPlanned(
        chain_id=CHAIN,
        steps=(planned_step(0), planned_step(1)),
        planner="rules",
        planner_note="no LLM configured",
        threshold=45.0,
    ),
    StepRequested(chain_id=CHAIN, step=0, attempt=1, seed=42, input_image=image()),
    StepRendered(
        chain_id=CHAIN,
        step=0,
        attempt=1,
        image=image(2),
        workflow_hash="ab" * 32,
        backend="http://gpu-1:8188",
        engine="comfyui",
        timings={"upload": 12.5, "execute": 8100.0},
    ),
    StepScored(chain_id=CHAIN, step=0, attempt=1, score=71.5, faces_found=1, threshold=40),
    StepAccepted(chain_id=CHAIN, step=0, attempt=2, image=image(2), score=38.0, decision="best_attempt"),
    StepRetried(chain_id=CHAIN, step=0, next_attempt=2, new_seed=43, previous_score=12.0, reason="face drifted"),
    contracts.ChainReanchored(chain_id=CHAIN, step=2, cumulative_drift=162.5, budget=150, replaced_image=image(2),
                              input_image=image(), reason="cumulative drift 162.5 past budget 150"),
    StepFailed(chain_id=CHAIN, step=1, attempt=1, reason="backend unreachable", stage="render"),
    ChainCompleted(chain_id=CHAIN, final_image=image(3), step_images=(image(2), image(3))),
    ChainFailed(
        chain_id=CHAIN,
        step=1,
        reason="no attempt reached 40",
        attempts=(AttemptScore(attempt=1, seed=1, score=10.0), AttemptScore(attempt=2, seed=2, reason="no face")),
    ),
    ChainCancelled(chain_id=CHAIN, reason=None, requested_by="u-1"),
    BatchCompleted(batch_id=CHAIN, chain_ids=(CHAIN,), completed=(CHAIN,), grid_image=image(9)),
    RenderStep(
        chain_id=CHAIN,
        step=0,
        attempt=1,
        seed=42,
        input_image=image(),
        prompt="change the background to a beach",
        loras=(LoraUse(name="mira_face", strength=-0.5, role="character"),),
        width=1024,
        height=1024,
        steps=8,
        cfg=1.0,
        model="flux-kontext",
        template="edit_v1",
        style="anime",
        deadline_s=120,
    ),
    RenderProgress(chain_id=CHAIN, step=0, attempt=1, value=3, max=20, node="31", queue_position=0),
    RenderPreview(chain_id=CHAIN, step=0, attempt=1, media_type="image/jpeg", data_base64="/9j/4AAQSkZJRg==", node="31"),
    RenderWaiting(chain_id=CHAIN, step=0, attempt=2, waited_s=3.5, limit_s=30.0),
    RenderCompleted(
        chain_id=CHAIN,
        step=0,
        attempt=1,
        image=image(2),
        workflow_hash="cd" * 32,
        backend="draft",
        engine="draft",
        timings={"execute": 5.0},
    ),
    RenderFailed(
        chain_id=CHAIN,
        step=0,
        attempt=1,
        reason="LoraLoader: lora 'x' not found",
        error_kind="validation",
        node_id="12",
        node_type="LoraLoader",
        backend="http://gpu-1:8188",
    ),
    ScoreFace(chain_id=CHAIN, step=0, attempt=1, image=image(2), reference_image=image(), character_id="mira"),
    FaceScored(
        chain_id=CHAIN,
        step=0,
        attempt=1,
        score=64.25,
        faces_found=1,
        boxes=(FaceBox(x=-3.5, y=10, width=120.5, height=140, det_score=0.91, similarity=64.25),),
        encoder="insightface/buffalo_l",
    ),
    FaceCheckFailed(chain_id=CHAIN, step=0, attempt=1, reason="image is not decodable"),
    CharacterCreated(
        character_id="mira",
        name="Mira",
        gender="woman",
        personality="cheerful",
        occupation="botanist",
        persona="Mira loves plants.",
        art_style="anime",
        builtin=True,
    ),
    CharacterReferenceSet(character_id="mira", image=image(), face_embedding_key="emb/" + "1" * 64),
    CharacterPersonaUpdated(character_id="mira", persona="Mira now loves cacti.", occupation="gardener"),
    CharacterThresholdSet(character_id="mira", threshold=55),
    contracts.CharacterScoreKept(character_id="mira", reference_sha256="a" * 64, chain_id=CHAIN, step=0, score=47.5),
    contracts.CharacterThresholdLearned(character_id="mira", reference_sha256="a" * 64, threshold=36.5,
                                        scores=(41.5, 47.5, 52.0), rule="q0.1 of 3 kept scores - 5, within [25, 40]",
                                        quantile_score=41.5),
    CreateCharacter(
        character_id="my-mira",
        name="Mira",
        gender="woman",
        personality="cheerful",
        occupation="botanist",
        persona="Mira loves plants.",
        art_style="photoreal",
        owner="u-1",
        reference_image=image(),
    ),
    SetCharacterReference(character_id="mira", image=image(2), requested_by="u-1"),
    UpdatePersona(character_id="my-mira", persona="Mira now loves cacti.", occupation="gardener", requested_by="u-1"),
    CharacterRefused(
        character_id="mira",
        command="character.update_persona",
        reason="built-in characters' personas cannot be edited",
        rule="character.builtin_read_only",
        requested_by="u-1",
    ),
    SendChatMessage(conversation_id=CONVERSATION, character_id="mira", user_id="u-1", text="hi!", message_id=MESSAGE),
    ConversationStarted(conversation_id=CONVERSATION, character_id="mira", user_id="u-1"),
    UserMessageSent(conversation_id=CONVERSATION, message_id=MESSAGE, text="send me a picture of you"),
    CharacterReplied(
        conversation_id=CONVERSATION,
        message_id=UUID(int=4),
        text="Here you go!",
        model="grok-3-mini",
        offline=False,
        prompt_tokens=120,
        completion_tokens=8,
        cost_usd=0.00012,
        in_reply_to=MESSAGE,
        user_id="u-1",
        character_id="mira",
        chain_id=CHAIN,
        needs_reference=False,
    ),
    ImageRequestedInChat(conversation_id=CONVERSATION, message_id=MESSAGE, chain_id=CHAIN, request_text="you at the beach"),
    ChatPictureSelected(conversation_id=CONVERSATION, message_id=MESSAGE, chain_id=CHAIN),
    ChatMessageRefused(conversation_id=CONVERSATION, message_id=MESSAGE, user_id="u-2", reason="not yours",
                       rule="chat.not_your_conversation"),
    ChatTokenDelta(conversation_id=CONVERSATION, message_id=UUID(int=4), delta="Here ", in_reply_to=MESSAGE, index=0),
    *DELIVERY_SAMPLES,
    GoldenChainRecorded(chain_id=CHAIN, character_id="mira", reference_image=image(1), style="anime", threshold=40.0,
                        steps=(GoldenStep(params=planned_step(0), attempt=2, input_image=image(1), image=image(2),
                                          score=71.5, workflow_hash="ab" * 32, engine="comfyui"),),
                        recorded_by="cli", note="before the flux upgrade"),
]
SAMPLE_IDS = [sample.type for sample in SAMPLES]


def sample_of(model: type[Message]) -> Message:
    return next(sample for sample in SAMPLES if type(sample) is model)


def contract_modules() -> list[ModuleType]:
    names = [info.name for info in pkgutil.iter_modules(contracts.__path__)]
    return [importlib.import_module(f"contracts.{name}") for name in sorted(names)]


def defined_public_names(module: ModuleType) -> set[str]:
    """Names a module binds at top level itself (classes, functions, assignments), not imports."""
    names: set[str] = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def literal_value(model: type[Message], field: str) -> object:
    annotation = model.model_fields[field].annotation
    assert typing.get_origin(annotation) is Literal, f"{model.__name__}.{field} is not a Literal"
    (value,) = typing.get_args(annotation)
    return value


# Exports


@pytest.mark.parametrize("module", contract_modules(), ids=lambda m: m.__name__)
def test_module_all_lists_exactly_what_it_defines(module: ModuleType) -> None:
    assert len(module.__all__) == len(set(module.__all__)), "duplicate names in __all__"
    assert set(module.__all__) == defined_public_names(module) - {"__all__"}
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"


def test_package_reexports_every_submodule_export() -> None:
    reexported = ("base", "errors", "registry", "envelope", "fields", "usage", *FAMILY_MODULES)
    expected = {name for sub in reexported for name in importlib.import_module(f"contracts.{sub}").__all__}
    expected |= defined_public_names(contracts)
    assert set(contracts.__all__) == expected
    assert len(contracts.__all__) == len(set(contracts.__all__))
    for name in contracts.__all__:
        assert getattr(contracts, name) is not None


def test_registry_holds_every_message_class_of_every_family() -> None:
    declared = {
        obj
        for family in FAMILY_MODULES
        for obj in vars(importlib.import_module(f"contracts.{family}")).values()
        if inspect.isclass(obj) and issubclass(obj, Message) and obj.__module__ == f"contracts.{family}"
    }
    assert set(all_message_types()) == declared
    assert set(REGISTRY.models.values()) == declared


def test_samples_cover_every_registered_type() -> None:
    assert sorted(SAMPLE_IDS) == sorted(REGISTRY.models)


# Shape of every message


@pytest.mark.parametrize("model", all_message_types(), ids=lambda m: m.__name__)
def test_type_literal_is_family_dot_name_and_routable(model: type[Message]) -> None:
    type_ = literal_value(model, "type")
    assert model.model_fields["type"].default == type_
    assert re.fullmatch(r"[a-z]+\.[a-z_]+", type_), type_
    family = type_.split(".")[0]
    assert model.__module__ == f"contracts.{family}", "a type's family is the module that defines it"
    assert event_subject(type_, f"{family}-x") == f"likeness.evt.{type_}.{family}-x"
    assert command_subject(type_) == f"likeness.cmd.{type_}"
    assert live_subject(type_, "corr-1") == f"likeness.live.{type_}.corr-1"


@pytest.mark.parametrize("model", all_message_types(), ids=lambda m: m.__name__)
def test_version_literal_is_one(model: type[Message]) -> None:
    assert literal_value(model, "version") == 1
    assert model.model_fields["version"].default == 1


def test_type_literals_are_unique() -> None:
    types = [literal_value(model, "type") for model in all_message_types()]
    assert len(types) == len(set(types))


def test_every_message_is_exactly_one_kind() -> None:
    for model in all_message_types():
        kinds = [base for base in (Event, Command, Ephemeral) if issubclass(model, base)]
        assert len(kinds) == 1, model.__name__


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_messages_are_frozen(sample: Message) -> None:
    field = next(name for name in type(sample).model_fields if name not in ("type", "version"))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(sample, field, getattr(sample, field))
    with pytest.raises(ValidationError, match="frozen"):
        sample.type = "chain.other"  # type: ignore[misc]


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_instance_kind_matches_its_base(sample: Message) -> None:
    # Guards against a field named `kind` shadowing the routing class variable on instances.
    expected = next(base.kind for base in (Event, Command, Ephemeral) if isinstance(sample, base))
    assert sample.kind == expected


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ChainCancelled(chain_id=CHAIN, requested_by="u-1", colour="red")  # type: ignore[call-arg]


# Envelope round trips


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_envelope_round_trip(sample: Message) -> None:
    envelope = Envelope.wrap(
        sample,
        event_id=EVENT_ID,
        stream=f"chain-{CHAIN}",
        seq=7,
        occurred_at=NOW,
        correlation_id=str(CHAIN),
        causation_id="cause-1",
        actor="u-1",
        trace=TraceContext(traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"),
    )
    received = Envelope.from_bytes(envelope.to_bytes())
    assert received == envelope
    assert (received.type, received.version) == (sample.type, 1)
    assert "type" not in received.data and "version" not in received.data
    opened = received.open(REGISTRY)
    assert type(opened) is type(sample)
    assert opened == sample


def test_rpc_subjects() -> None:
    assert rpc_subject("face.check_reference") == "likeness.rpc.face.check_reference"
    with pytest.raises(ValueError, match="subject token"):
        rpc_subject("face.check.reference")


def test_big_seed_survives_the_wire() -> None:
    sample = StepRequested(chain_id=CHAIN, step=0, attempt=1, seed=2**64 - 1, input_image=image())
    raw = Envelope.wrap(sample, event_id=EVENT_ID, stream="s", occurred_at=NOW, correlation_id="c").to_bytes()
    assert Envelope.from_bytes(raw).open(REGISTRY).seed == 2**64 - 1


# Decoding errors


def raw_envelope(**overrides: object) -> bytes:
    envelope = Envelope.wrap(
        sample_of(RequestChain), event_id=EVENT_ID, stream=f"chain-{CHAIN}", occurred_at=NOW, correlation_id=str(CHAIN)
    )
    return json.dumps({**envelope.model_dump(mode="json"), **overrides}).encode()


@pytest.mark.parametrize(
    ("raw", "error", "says"),
    [
        (b"\x89PNG\r\n", MalformedMessage, "not JSON"),
        (b"{not json", MalformedMessage, "not JSON"),
        (b"[" * 100_000, MalformedMessage, "not JSON"),
        (b'{"hello": "world"}', MalformedMessage, "event_id: Field required"),
        (b"[1, 2]", MalformedMessage, "not a Likeness envelope"),
        (raw_envelope(version=0), MalformedMessage, "version"),
    ],
    ids=["binary", "broken-json", "deep-json", "other-object", "array", "version-zero"],
)
def test_from_bytes_refuses_what_is_not_an_envelope(raw: bytes, error: type[ContractError], says: str) -> None:
    with pytest.raises(error, match=re.escape(says)):
        Envelope.from_bytes(raw)


@pytest.mark.parametrize(
    ("raw", "error", "says"),
    [
        (raw_envelope(type="chain.teleported"), UnknownMessageType, "unknown message type 'chain.teleported'"),
        (raw_envelope(version=2), UnsupportedVersion, "chain.request version 2 is newer than the known version 1"),
        (raw_envelope(data={"chain_id": "nope"}), MalformedMessage, "chain.request v1 body is invalid: chain_id"),
    ],
    ids=["unknown-type", "newer-version", "bad-body"],
)
def test_open_refuses_what_no_contract_accepts(raw: bytes, error: type[ContractError], says: str) -> None:
    envelope = Envelope.from_bytes(raw)
    with pytest.raises(error, match=re.escape(says)) as caught:
        envelope.open(REGISTRY)
    assert isinstance(caught.value, ContractError)


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: ChainPlanned(chain_id=CHAIN, steps=(), planner="rules"), "at least 1 item"),
        (lambda: ChainPlanned(chain_id=CHAIN, steps=(planned_step(1),), planner="rules"), "must be 0..0 in order"),
        (lambda: StepScored(chain_id=CHAIN, step=0, attempt=1, score=100.5, faces_found=1, threshold=40), "score"),
        (lambda: StepRequested(chain_id=CHAIN, step=0, attempt=0, seed=1, input_image=image()), "attempt"),
        (lambda: StepRequested(chain_id=CHAIN, step=-1, attempt=1, seed=1, input_image=image()), "step"),
        (lambda: StepRequested(chain_id=CHAIN, step=0, attempt=1, seed=2**64, input_image=image()), "seed"),
        (lambda: LoraUse(name="x", strength=9, role="style"), "strength"),
        (lambda: RequestChain(**{**sample_of(RequestChain).body(), "variant_index": 2}), "must be below variant_count"),
        (lambda: RequestChain(**{**sample_of(RequestChain).body(), "branch_from_step": 1}), "needs parent_chain_id"),
        (lambda: RequestChain(**{**sample_of(RequestChain).body(), "character_id": "mira.evil"}), "character_id"),
        (lambda: CharacterCreated(**{**sample_of(CharacterCreated).body(), "owner": "u-1"}), "built-in character has no owner"),
        (lambda: CreateCharacter(**{**sample_of(CreateCharacter).body(), "persona": "x" * 4001}), "persona"),
        (lambda: RenderProgress(chain_id=CHAIN, step=0, attempt=1, value=21, max=20), "exceeds max"),
        (lambda: RenderPreview(chain_id=CHAIN, step=0, attempt=1, media_type="image/png", data_base64="<svg>"), "data"),
        (lambda: FaceBox(x=0, y=0, width=10, height=10, det_score=1.5), "det_score"),
    ],
)
def test_constraints_refuse_impossible_values(build: typing.Callable[[], object], says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        build()


# Upcasting


class ThingNamed(Event):
    """Test-local v2: `name` was split into `first` and `last`."""

    type: Literal["test.thing_named"] = "test.thing_named"
    version: Literal[2] = 2

    first: str
    last: str


class ThingNamedV3(Event):
    """Test-local v3: adds a required `title`."""

    type: Literal["test.thing_named"] = "test.thing_named"
    version: Literal[3] = 3

    first: str
    last: str
    title: str


def split_name(body: dict) -> dict:
    first, last = body.pop("name").split(" ", 1)
    return {**body, "first": first, "last": last}


def test_upcaster_brings_v1_body_to_v2() -> None:
    registry = MessageRegistry([ThingNamed])
    registry.upcaster("test.thing_named", 1)(split_name)
    assert registry.parse("test.thing_named", 1, {"name": "Ada Lovelace"}) == ThingNamed(first="Ada", last="Lovelace")
    # The current version is parsed as is.
    assert registry.parse("test.thing_named", 2, {"first": "A", "last": "B"}) == ThingNamed(first="A", last="B")


def test_upcasters_chain_across_versions_through_the_envelope() -> None:
    registry = MessageRegistry([ThingNamedV3])
    registry.upcaster("test.thing_named", 1)(split_name)

    @registry.upcaster("test.thing_named", 2)
    def add_title(body: dict) -> dict:
        return {**body, "title": ""}

    raw = raw_envelope(type="test.thing_named", version=1, data={"name": "Ada Lovelace"})
    opened = Envelope.from_bytes(raw).open(registry)
    assert opened == ThingNamedV3(first="Ada", last="Lovelace", title="")


def test_missing_upcaster_is_unsupported_version() -> None:
    registry = MessageRegistry([ThingNamedV3])
    registry.upcaster("test.thing_named", 1)(split_name)
    with pytest.raises(UnsupportedVersion, match="test.thing_named version 2 has no upcaster to version 3"):
        registry.parse("test.thing_named", 1, {"name": "Ada Lovelace"})


def test_old_body_an_upcaster_cannot_read_is_malformed() -> None:
    registry = MessageRegistry([ThingNamed])
    registry.upcaster("test.thing_named", 1)(split_name)
    with pytest.raises(MalformedMessage, match="test.thing_named v1 body cannot be upcast: KeyError"):
        registry.parse("test.thing_named", 1, {"nom": "Ada Lovelace"})


def test_registry_refuses_duplicate_types() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        MessageRegistry([ThingNamed, ThingNamedV3])


# Schemas


def test_export_schemas_writes_one_valid_file_per_type(tmp_path) -> None:
    written = export_schemas(tmp_path / "schemas")
    expected = {f"{type_}.v1.json" for type_ in REGISTRY.models} | {"envelope.json"}
    assert {path.name for path in written} == expected
    assert {path.name for path in (tmp_path / "schemas").iterdir()} == expected
    for path in written:
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["type"] == "object"
        if path.name == "envelope.json":
            assert {"event_id", "type", "version", "data"} <= set(schema["properties"])
            continue
        type_ = path.name.removesuffix(".v1.json")
        model = REGISTRY.model_for(type_)
        assert schema["title"] == model.__name__
        assert schema["properties"]["type"]["const"] == type_
        assert set(schema["properties"]) == set(model.model_fields)
