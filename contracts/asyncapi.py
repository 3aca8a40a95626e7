"""The bus as an AsyncAPI 3 document: every subject the services publish and read, each payload's JSON Schema.

FastStream writes the document from publishers declared on a broker that never connects (no I/O here):

    likeness.cmd.<type>                     one channel per command   (JetStream LIKENESS_COMMANDS)
    likeness.evt.<type>.{stream_id}         one channel per event     (JetStream LIKENESS_EVENTS)
    likeness.live.<type>.{correlation_id}   one channel per live kind (core NATS)
    likeness.rpc.<name>                     request/reply, with its reply channel (core NATS)
    likeness.dlq.{service}                  dead letters              (JetStream LIKENESS_DEAD_LETTERS)

A message payload is the envelope (`contracts.envelope`) whose `data` is the message's own model, so each
schema is the contract itself. Who sends and who reads each family is written once, in `_ROUTES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from faststream.nats import JStream, NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, create_model

from contracts import REGISTRY
from contracts.base import Message
from contracts.catalog import CATALOG_SUBJECT, Catalog
from contracts.delivery_rpc import DELIVERY_RPC_SUBJECT, DeliveryReply, DeliveryRpc
from contracts.envelope import Envelope
from contracts.face import ReferenceCheckReply, ReferenceCheckRequest
from contracts.registry import MessageRegistry
from contracts.subjects import (
    COMMANDS_STREAM,
    DEAD_LETTERS_STREAM,
    EVENTS_STREAM,
    command_subject,
    dead_letter_subject,
    event_subject,
    live_subject,
    rpc_subject,
)

__all__ = [
    "REFERENCE_CHECK_SUBJECT",
    "UNROUTED",
    "Route",
    "asyncapi_document",
    "route_of",
]

REFERENCE_CHECK_SUBJECT = rpc_subject("face.check_reference")
# The address the document gives the local NATS server; deployments set LIKENESS_NATS_URL instead.
_SERVER_URL = "nats://127.0.0.1:4222"
# Where a route was not written down: a test fails on it, the document still serves.
UNROUTED = "unknown: add the family to contracts/asyncapi.py"



@dataclass(frozen=True)
class Route:
    """Who puts a family's messages of one kind on the bus, and who reads them."""

    sent_by: str
    read_by: str


_ROUTES: dict[tuple[str, str], Route] = {
    ("chain", "command"): Route("the gateway, chat (a picture asked for in a message) and `likeness edit`",
                                "the planner (durable `planner-commands`)"),
    ("render", "command"): Route("the planner", "the renderer (durable `renderer`)"),
    ("face", "command"): Route("the planner", "facecheck (durable `facecheck`)"),
    ("character", "command"): Route("the gateway", "chat (durable `chat-commands-character`)"),
    ("chat", "command"): Route("the gateway", "chat (durable `chat-commands-chat`)"),
    ("chain", "event"): Route("the planner (its log, through the outbox relay)",
                              "the gateway (live hub: chain SSE, /wait, read models) and `likeness edit`"),
    ("render", "event"): Route("the renderer", "the planner (durable `planner-render-results`)"),
    ("face", "event"): Route("facecheck", "the planner (durable `planner-face-results`)"),
    ("character", "event"): Route("chat (its log, through the outbox relay)", "the gateway (live hub, read models)"),
    ("chat", "event"): Route("chat (its log, through the outbox relay)", "the gateway (live hub: chat SSE)"),
    ("render", "ephemeral"): Route("the renderer",
                                   "the gateway (SSE `progress`, `queue`, `preview`, `waiting`) and `likeness edit`"),
    ("chat", "ephemeral"): Route("chat", "the gateway (SSE `delta`)"),
    ("delivery", "event"): Route("delivery (its log, through the outbox relay)",
                                 "the delivery service itself, from the log (the gateway reads it over "
                                 "`likeness.rpc.delivery.manage`)"),
    ("golden", "event"): Route("`likeness golden record` (its log, through the outbox relay)",
                               "`likeness golden verify`, from the log"),
    ("delivery", "command"): Route("delivery (with each request or retry, through the outbox)",
                                   "delivery (durable `delivery-attempts`)"),
}

# Subject tokens the document writes as AsyncAPI channel parameters, with what each one is.
_PARAMETERS = {
    "stream_id": "the event's stream in the log, e.g. `chain-<uuid>` (contracts.streams)",
    "correlation_id": "the chain or conversation stream the live message belongs to",
    "service": "the service that gave up on the message (its LIKENESS_SERVICE_NAME)",
    "inbox": "the requester's reply inbox (NATS request/reply)",
}


def route_of(model: type[Message]) -> Route:
    """Who sends and who reads messages of `model`'s family and kind."""
    family = model.model_fields["type"].default.partition(".")[0]
    return _ROUTES.get((family, model.kind), Route(UNROUTED, UNROUTED))


def asyncapi_document(registry: MessageRegistry = REGISTRY) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every subject on the bus, as JSON-ready data."""
    broker = NatsBroker(_SERVER_URL, description="The NATS server with JetStream (LIKENESS_NATS_URL); "
                                                 "`likeness up` starts an embedded one")
    streams: dict[str, str] = {}
    for type_, model in registry.models.items():
        address, stream = _address(type_, model.kind)
        route = route_of(model)
        description = (f"{_first_line(model.__doc__)}\n\nSent by {route.sent_by}; read by {route.read_by}. "
                       + (f"JetStream stream `{stream}`." if stream else "Core NATS only: never stored."))
        broker.publisher(address, stream=JStream(stream, declare=False) if stream else None, title=type_,
                         description=description, schema=_envelope_of(model, type_, registry.current_version(type_)))
        if stream:
            streams[type_] = stream
    replies = {
        "rpc.face.check_reference": _rpc(
            broker, REFERENCE_CHECK_SUBJECT, ReferenceCheckRequest, ReferenceCheckReply,
            "Can the stored image be a character's reference photo? Asked by the gateway before it records an "
            "upload; answered by facecheck (queue group `facecheck`). Every request gets a reply."),
        "rpc.delivery.manage": _rpc(
            broker, DELIVERY_RPC_SUBJECT, DeliveryRpc, DeliveryReply,
            "A user's delivery destinations, delivery log, replays and sends, asked by the gateway for the user it "
            "authenticated; answered by delivery (queue group `delivery`) with the HTTP status and body to give."),
        "rpc.planner.catalog": _rpc(
            broker, CATALOG_SUBJECT, None, Catalog,
            "The models and styles pictures can be made with. Asked by the gateway (GET /models, /styles, a new "
            "character's art style) with an empty request; answered by the planner (queue group `planner`)."),
    }
    broker.publisher(dead_letter_subject("service").replace(".service", ".{service}"),
                     stream=JStream(DEAD_LETTERS_STREAM, declare=False), title="dead_letters", schema=Envelope,
                     description="A message its consumer gave up on: the original bytes (an envelope, unless it was "
                                 "not one), with headers `Likeness-Reason`, `Likeness-Original-Subject`, "
                                 "`Likeness-Consumer`, `Likeness-Deliveries`. Sent by any service's consumers; read "
                                 "by the planner (durables `planner-dead-letters-<service>`), which ends the chain.")
    streams["dead_letters"] = DEAD_LETTERS_STREAM
    document = AsyncAPI(broker, title="Likeness bus", version="1", schema_version="3.0.0",
                        description=_DESCRIPTION).to_specification().to_jsonable()
    return _completed(document, streams, replies)


_DESCRIPTION = f"""Every NATS subject the Likeness services publish and read (contracts/subjects.py).

Streams: `{EVENTS_STREAM}` keeps `likeness.evt.>` (events, limits retention), `{COMMANDS_STREAM}` keeps
`likeness.cmd.>` (commands, work queue: one replica handles each), `{DEAD_LETTERS_STREAM}` keeps
`likeness.dlq.>`. `likeness.live.>` and `likeness.rpc.>` are core NATS. Every message but an RPC's is an
envelope whose `data` is the typed message body; a JetStream message's `Nats-Msg-Id` header is the
envelope's `event_id`. Within a version fields are only ever added (optional); a breaking change bumps
the `version` and readers upcast old bodies."""


def _address(type_: str, kind: str) -> tuple[str, str | None]:
    """A message type's subject with its variable token as a channel parameter, and its JetStream stream."""
    if kind == "command":
        return command_subject(type_), COMMANDS_STREAM
    if kind == "event":
        return _parameter(event_subject(type_, "_"), "stream_id"), EVENTS_STREAM
    return _parameter(live_subject(type_, "_"), "correlation_id"), None


def _parameter(subject: str, name: str) -> str:
    return f"{subject.rpartition('.')[0]}.{{{name}}}"


def _envelope_of(model: type[Message], type_: str, version: int) -> type[Envelope]:
    """The envelope of one message type: its `type` and `version` fixed, its `data` the model."""
    return create_model(f"{model.__name__}Envelope", __base__=Envelope, __doc__=f"A `{type_}` v{version} envelope.",
                        type=(Literal[type_], type_), version=(Literal[version], version), data=(model, ...))


def _rpc(broker: NatsBroker, subject: str, request: type[BaseModel] | None, reply: type[BaseModel],
         description: str) -> str:
    """A request channel and its reply channel; the title of the reply's channel."""
    name = subject.removeprefix("likeness.")
    broker.publisher(subject, title=name, schema=request, description=description)
    broker.publisher("_INBOX.{inbox}", title=f"{name}.reply", schema=reply,
                     description=f"The reply to a request on `{subject}`, on the requester's inbox.")
    return f"{name}.reply"


def _completed(document: dict[str, Any], streams: dict[str, str], replies: dict[str, str]) -> dict[str, Any]:
    """What FastStream leaves out or guesses: channel parameters, each channel's JetStream stream, RPC replies,
    where the correlation id is; maps sorted by name, so a written document diffs cleanly."""
    for name, channel in document["channels"].items():
        parameters = {p: {"description": text} for p, text in _PARAMETERS.items() if f"{{{p}}}" in channel["address"]}
        if parameters:
            channel["parameters"] = parameters
        if name in streams:
            channel["x-jetstream-stream"] = streams[name]
    for request, reply in replies.items():
        messages = document["channels"][reply]["messages"]
        document["operations"][request]["reply"] = {
            "channel": {"$ref": f"#/channels/{reply}"},
            "messages": [{"$ref": f"#/channels/{reply}/messages/{key}"} for key in messages],
        }
    components = document["components"]
    rpc_messages = {f"{name}:" for pair in replies.items() for name in pair}
    for name, message in components["messages"].items():
        # FastStream assumes a `correlation_id` header; ours travels in the envelope, and an RPC has none.
        if any(name.startswith(prefix) for prefix in rpc_messages):
            message.pop("correlationId", None)
        else:
            message["correlationId"] = {"location": "$message.payload#/correlation_id",
                                        "description": "the chain or conversation the message belongs to"}
    for name in list(components["schemas"]):
        if name.startswith("rpc.") and components["schemas"][name] == {}:
            # A request without a body: FastStream writes it as "anything".
            components["schemas"][name] = {"description": "empty: the request carries no body", "type": "string",
                                           "maxLength": 0}
    for key in ("channels", "operations"):
        document[key] = dict(sorted(document[key].items()))
    for key in ("messages", "schemas"):
        components[key] = dict(sorted(components[key].items()))
    return document


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""
