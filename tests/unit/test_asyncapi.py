"""The bus's AsyncAPI document: every subject contracts/subjects.py builds is a channel, with the contract's
own JSON Schema as the payload, and every reference in it resolves."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from contracts import REGISTRY, Envelope, Message, all_message_types
from contracts.asyncapi import (
    UNROUTED,
    asyncapi_document,
    route_of,
)
from contracts.catalog import CATALOG_SUBJECT, Catalog
from contracts.delivery_rpc import DELIVERY_RPC_SUBJECT
from contracts.face import ReferenceCheckReply, ReferenceCheckRequest
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
from services.facecheck import rpc as facecheck_rpc
from services.launcher.cli import cmd_schemas
from services.launcher.settings import LauncherSettings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document()


def resolve(node: Any, root: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """`node` with every `$ref` inside it replaced by what it points to (a JSON pointer into `root`)."""
    if isinstance(node, list):
        return [resolve(item, root, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        pointer = node["$ref"]
        assert pointer.startswith("#/"), pointer
        assert pointer not in seen, f"recursive reference {pointer}"
        target: Any = root
        for part in pointer[2:].split("/"):
            assert part in target, f"{pointer} points nowhere"
            target = target[part]
        return resolve(target, root, (*seen, pointer))
    return {key: resolve(value, root, seen) for key, value in node.items()}


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's own JSON Schema with its `$defs` resolved in place."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return resolve(schema, {"$defs": defs})


def channel_for(document: dict[str, Any], subject: str) -> tuple[str, dict[str, Any]]:
    """The one channel whose address (parameters as wildcards of one token) matches a concrete subject."""
    found = []
    for name, channel in document["channels"].items():
        pattern = re.escape(channel["address"])
        pattern = re.sub(r"\\\{[a-z_]+\\\}", r"[^.]+", pattern)
        if re.fullmatch(pattern, subject):
            found.append((name, channel))
    assert len(found) == 1, f"{subject}: channels {[name for name, _ in found]}"
    return found[0]


def payload(document: dict[str, Any], channel: dict[str, Any]) -> dict[str, Any]:
    (message,) = channel["messages"].values()
    return resolve(message, document)["payload"]


def subject_of(model: type[Message], token: str = "chain-0b5e") -> str:
    type_ = model.model_fields["type"].default
    if model.kind == "command":
        return command_subject(type_)
    if model.kind == "event":
        return event_subject(type_, token)
    return live_subject(type_, token)


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    resolved = resolve(document, document)
    assert "$ref" not in json.dumps(resolved)
    assert document["asyncapi"] == "3.0.0"


@pytest.mark.parametrize("model", all_message_types(), ids=lambda m: m.__name__)
def test_every_message_type_has_its_subject_and_its_contract_as_payload(document: dict[str, Any],
                                                                          model: type[Message]) -> None:
    type_ = model.model_fields["type"].default
    _, channel = channel_for(document, subject_of(model))
    body = payload(document, channel)
    # The envelope around it, with the type and version fixed to this message's...
    assert body["properties"]["type"]["const"] == type_
    assert body["properties"]["version"]["const"] == REGISTRY.current_version(type_)
    envelope_fields = set(Envelope.model_fields)
    assert set(body["properties"]) == envelope_fields
    # ...and the message's own schema as its `data`.
    assert body["properties"]["data"] == model_schema(model)
    stream = {"command": COMMANDS_STREAM, "event": EVENTS_STREAM}.get(model.kind)
    assert channel.get("x-jetstream-stream") == stream
    route = route_of(model)
    assert UNROUTED not in (route.sent_by, route.read_by), f"{type_}: who sends and reads it is not written down"
    assert route.sent_by in channel["description"] and route.read_by in channel["description"]


def test_variable_tokens_are_channel_parameters(document: dict[str, Any]) -> None:
    for name, channel in document["channels"].items():
        named = set(re.findall(r"\{([a-z_]+)\}", channel["address"]))
        assert set(channel.get("parameters", {})) == named, name


def test_the_request_reply_subjects_carry_their_request_and_reply(document: dict[str, Any]) -> None:
    for subject, request, reply in ((rpc_subject("face.check_reference"), ReferenceCheckRequest, ReferenceCheckReply),
                                    (CATALOG_SUBJECT, None, Catalog)):
        name, channel = channel_for(document, subject)
        if request is not None:
            assert payload(document, channel) == model_schema(request)
        else:
            assert payload(document, channel)["maxLength"] == 0  # the catalog is asked with an empty body
        answer = resolve(document["operations"][name]["reply"], document)
        (message,) = answer["messages"]
        assert message["payload"] == model_schema(reply)


def test_the_reference_check_documented_is_the_one_facecheck_answers() -> None:
    assert facecheck_rpc.ReferenceCheckRequest is ReferenceCheckRequest
    assert facecheck_rpc.ReferenceCheckReply is ReferenceCheckReply
    assert facecheck_rpc.SUBJECT == rpc_subject("face.check_reference")


def test_dead_letters_are_a_channel_per_service(document: dict[str, Any]) -> None:
    for service in ("planner", "renderer", "facecheck", "chat"):
        _, channel = channel_for(document, dead_letter_subject(service))
        assert channel["x-jetstream-stream"] == DEAD_LETTERS_STREAM
        assert "Likeness-Reason" in channel["description"]


def test_every_channel_is_a_subject_the_contracts_build(document: dict[str, Any]) -> None:
    built = [subject_of(model) for model in all_message_types()]
    built += [rpc_subject("face.check_reference"), CATALOG_SUBJECT, DELIVERY_RPC_SUBJECT, dead_letter_subject("planner")]
    # Replies travel on the requester's inbox, which no contract names.
    channels = {name for name, channel in document["channels"].items() if not channel["address"].startswith("_INBOX.")}
    assert channels == {channel_for(document, subject)[0] for subject in built}


def test_likeness_schemas_writes_asyncapi_json_next_to_the_json_schemas(
        document: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_schemas(LauncherSettings(), argparse.Namespace(out=str(tmp_path))) == 0
    written = json.loads((tmp_path / "asyncapi.json").read_text())
    assert written == json.loads(json.dumps(document))
    assert (tmp_path / "chain.step_scored.v1.json").is_file()
    assert "asyncapi.json written to" in capsys.readouterr().out
