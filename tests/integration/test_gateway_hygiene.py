"""Bad bytes at the edge: text Postgres cannot store is a 422 naming the field, on every endpoint; a photo
of several faces is a 422 unless the caller names the face. Nothing of it reaches the bus."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services.gateway.uploads import clean_photo
from tests.conftest import Backends
from tests.faces import face_of
from tests.fakes.gateway_world import GatewayWorld
from tests.integration.gateway_helpers import assert_error, form

pytestmark = pytest.mark.integration

NUL = "in a park\u0000"


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_command_timeout_s=5.0,
                               gateway_rate_per_s=1000.0, gateway_rate_burst=1000.0).start()
    yield world
    await world.close()


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), path, operation


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def string_fields(spec: dict, schema: dict) -> list[str]:
    """Names of the text properties of a JSON body schema (anyOf string|null included)."""
    names = []
    for name, prop in resolve(spec, schema).get("properties", {}).items():
        kinds = [resolve(spec, p).get("type") for p in prop.get("anyOf", [prop])]
        if "string" in kinds:
            names.append(name)
    return names


def cases(spec: dict) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    """(method, url, request options, the field named in the 422) for every text input of every endpoint."""
    for method, path, operation in operations(spec):
        params = operation.get("parameters", [])
        concrete = path
        for param in params:
            if param["in"] == "path":
                concrete = concrete.replace("{" + param["name"] + "}", "x")
        for param in params:
            if param["in"] == "path":
                yield method, path.replace("{" + param["name"] + "}", "x%00"), {}, "path"
            elif param["in"] == "query" and "string" in {resolve(spec, s).get("type")
                                                       for s in param["schema"].get("anyOf", [param["schema"]])}:
                yield method, concrete, {"params": {param["name"]: NUL}}, param["name"]
        body = operation.get("requestBody", {}).get("content", {})
        if "application/json" in body:
            for name in string_fields(spec, body["application/json"]["schema"]):
                yield method, concrete, {"json": {name: NUL}}, name


async def test_nul_in_any_text_field_of_any_endpoint_is_a_422_naming_it(world: GatewayWorld, alice) -> None:
    spec = (await alice.get("/openapi.json")).json()
    seen = list(cases(spec))
    assert len(seen) >= 20, seen  # every endpoint's inputs, not a handful
    for method, url, options, field in seen:
        response = await alice.request(method, url, **options)
        body = assert_error(response, 422, "invalid_request")
        assert any(f["field"] == field and "NUL" in f["message"] for f in body["fields"]), (method, url, body)


async def test_lone_surrogates_and_nul_in_nested_json_and_form_fields_are_refused(world: GatewayWorld, alice) -> None:
    surrogate = await alice.post("/chat/generate-image", content=b'{"request": "on a beach \\ud800"}',
                                 headers={"content-type": "application/json"})
    body = assert_error(surrogate, 422, "invalid_request")
    assert body["fields"][0]["field"] == "request" and "surrogate" in body["fields"][0]["message"]
    upload = await alice.post("/characters/upload-image", **form(face_of(0), name="Mi\u0000a"))
    assert_error(upload, 422, "invalid_request")
    assert "'name'" in upload.json()["detail"] and "NUL" in upload.json()["detail"]
    # A clean request still works, through the same middleware.
    assert (await alice.post("/characters/upload-image", **form(face_of(0), name="Mia"))).status_code == 201


async def test_a_photo_of_several_faces_needs_the_caller_to_name_the_face(world: GatewayWorld, alice) -> None:
    photo = face_of(1)
    world.facecheck.crowds[hashlib.sha256(clean_photo(photo)).hexdigest()] = 5
    refused = await alice.post("/characters/upload-image", **form(photo, name="Crowd"))
    body = assert_error(refused, 422, "several_faces")
    assert "5 faces" in body["detail"] and "face=largest" in body["detail"]
    bad = await alice.post("/characters/upload-image", **form(photo, name="Crowd", face="third"))
    assert_error(bad, 422, "invalid_field")
    named = await alice.post("/characters/upload-image", **form(photo, name="Crowd", face="largest"))
    assert named.status_code == 201, named.text


async def test_the_openapi_document_says_how_to_authenticate(world: GatewayWorld, alice) -> None:
    from services.gateway.auth import SESSION_COOKIE

    spec = (await alice.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "http", "scheme": "bearer", "bearerFormat": "lk_...",
                                 "description": schemes["apiKey"]["description"]}
    assert schemes["session"]["in"] == "cookie" and schemes["session"]["name"] == SESSION_COOKIE
    assert spec["security"] == [{"apiKey": []}, {"session": []}, {}]
