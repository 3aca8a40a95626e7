"""The facecheck service's reference-photo check over NATS request/reply, with real faces (dlib)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import nats
import pytest

from contracts.subjects import COMMANDS_STREAM, rpc_subject
from services.facecheck.dlib_encoder import load_dlib
from services.facecheck.handlers import CONSUMER
from services.facecheck.service import build_runtime
from services.facecheck.settings import FacecheckSettings
from services.runtime.blobs import BlobStore
from tests.conftest import Backends
from tests.runtimes import running
from tests.faces import corrupt_image, face_of, no_face_image, two_faces_image

pytestmark = pytest.mark.integration

SUBJECT = "likeness.rpc.face.check_reference"


@pytest.fixture(scope="module")
async def service(backends: Backends) -> AsyncIterator[None]:
    settings = FacecheckSettings(nats_url=backends.nats_url, database_url=backends.database_url, environment="test",
                                 graceful_timeout_s=5.0)
    encoder = load_dlib()
    async with running(build_runtime(settings, encoder_factory=lambda _settings: encoder)):
        yield
    nc = await nats.connect(backends.nats_url, connect_timeout=5)
    await nc.jetstream().delete_consumer(COMMANDS_STREAM, CONSUMER)  # work-queue filters must not overlap later
    await nc.drain()


async def check(nc: nats.NATS, body: bytes) -> dict:
    reply = await nc.request(SUBJECT, body, timeout=30)
    return json.loads(reply.data)


async def check_image(nc: nats.NATS, data: bytes) -> dict:
    sha = await (await BlobStore.open(nc.jetstream(timeout=5))).put_bytes(data, "image/png")
    return await check(nc, json.dumps({"sha256": sha}).encode())


def test_the_subject_is_named_in_the_contracts() -> None:
    assert rpc_subject("face.check_reference") == SUBJECT


async def test_a_face_photo_is_a_good_reference(service: None, nc: nats.NATS) -> None:
    reply = await check_image(nc, face_of(0))
    assert set(reply) == {"ok", "faces_found", "reason", "box"}
    assert reply["ok"] is True and reply["faces_found"] == 1 and reply["reason"] is None
    box = reply["box"]
    assert set(box) == {"x", "y", "width", "height", "det_score"} and box["width"] > 64 and 0 < box["det_score"] <= 1


async def test_two_faces_are_accepted_with_a_note(service: None, nc: nats.NATS) -> None:
    reply = await check_image(nc, two_faces_image(1, 4))
    assert reply["ok"] is True and reply["faces_found"] == 2 and "largest" in reply["reason"]


async def test_what_cannot_be_a_reference_says_why(service: None, nc: nats.NATS) -> None:
    no_face = await check_image(nc, no_face_image())
    assert no_face == {"ok": False, "faces_found": 0, "box": None,
                       "reason": "no face found: a reference image needs one clear, front-facing face"}
    corrupt = await check_image(nc, corrupt_image())
    assert corrupt["ok"] is False and corrupt["reason"].startswith("unreadable image")
    missing = await check(nc, json.dumps({"sha256": "0" * 64}).encode())
    assert missing["ok"] is False and "no image is stored under sha256 " + "0" * 64 in missing["reason"]


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"sha256": "ABC"}', b"[1, 2]"])
async def test_bad_requests_get_an_answer_and_the_service_keeps_answering(
    service: None, nc: nats.NATS, body: bytes
) -> None:
    reply = await check(nc, body)
    assert reply["ok"] is False and reply["reason"].startswith("bad request") and reply["box"] is None
    assert (await check_image(nc, face_of(2)))["ok"] is True
