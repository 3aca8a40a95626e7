"""`likeness edit --api-key` as an HTTP client alone (httpx.MockTransport): reading the gateway's event stream,
resuming it where it broke off, and saying what the gateway refused. The real gateway's side is in
tests/integration/test_cli_api_key.py."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from contracts import ChainCompleted, ChainPlanned, ImageRef, Message, PlannedStep, StepAccepted, StepRequested
from contracts.envelope import Envelope
from services.launcher.chain_commands import CliError
from services.launcher.progress import PlainProgress
from services.launcher.remote import SseFrame, edit_via_gateway, sse_frames

CHAIN = uuid.UUID(int=11)
PICTURE = b"\x89PNG not really, but bytes all the same"
IMAGE = ImageRef(sha256=hashlib.sha256(PICTURE).hexdigest(), media_type="image/png", width=8, height=8,
                 bytes=len(PICTURE))
STEP = PlannedStep(index=0, kind="pose", prompt="sitting", width=512, height=512, seed=5, model="qwen",
                   template="qwen_edit", steps=8, cfg=1.0)
EVENTS: list[Message] = [
    ChainPlanned(chain_id=CHAIN, steps=(STEP,), planner="rules", threshold=40.0),
    StepRequested(chain_id=CHAIN, step=0, attempt=1, seed=5, input_image=IMAGE),
    StepAccepted(chain_id=CHAIN, step=0, attempt=1, image=IMAGE, score=70.0),
    ChainCompleted(chain_id=CHAIN, final_image=IMAGE, step_images=(IMAGE,)),
]


def frame(version: int, message: Message) -> bytes:
    envelope = Envelope.wrap(message, event_id=uuid.uuid4(), stream=f"chain-{CHAIN}", seq=version,
                             occurred_at=datetime.now(UTC), correlation_id=f"chain-{CHAIN}")
    return f"id: {version}\nevent: {message.type}\ndata: {envelope.model_dump_json()}\n\n".encode()


async def lines(*chunks: str) -> AsyncIterator[str]:
    for chunk in chunks:
        for line in chunk.split("\n"):
            yield line


async def test_the_parser_reads_ids_events_multiline_data_and_skips_heartbeats() -> None:
    got = [f async for f in sse_frames(lines(": ping\n\nid: 4\nevent: chain.planned\ndata: {\"a\":\ndata: 1}\n\n",
                                             "event: progress\ndata:{}\n\n"))]
    assert got == [SseFrame("4", "chain.planned", '{"a":\n1}'), SseFrame(None, "progress", "{}")]


class Gateway:
    """Answers like the gateway: the job, then an event stream that breaks off after two events the first time."""

    def __init__(self) -> None:
        self.resumed_from: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/chat/generate-image":
            assert request.headers["authorization"] == "Bearer lk_test"
            assert json.loads(request.content) == {"character_id": "luna", "request": "at the beach"}
            return httpx.Response(202, json={"job_id": str(CHAIN), "chain_id": str(CHAIN), "status": "queued",
                                             "status_url": "", "wait_url": "",
                                             "events_url": f"/chains/{CHAIN}/events"})
        if request.url.path == f"/chains/{CHAIN}/events":
            last = request.headers.get("last-event-id")
            self.resumed_from.append(last)
            start = int(last or 0)
            frames = [frame(v, m) for v, m in enumerate(EVENTS, start=1) if v > start]
            # The first connection drops after two events, with the chain still running.
            body = frames[:2] if last is None else frames
            progress = b'event: progress\ndata: {"chain_id":"%s","step":0,"attempt":1,"value":3,"max":6}\n\n' % (
                str(CHAIN).encode())
            return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  content=b": ping\n\n" + progress + b"".join(body))
        if request.url.path == f"/images/{IMAGE.sha256}":
            return httpx.Response(200, content=PICTURE, headers={"content-type": "image/png"})
        return httpx.Response(404, json={"error": "not_found", "detail": f"no {request.url.path}"})


async def test_a_broken_stream_is_resumed_after_the_last_event_and_the_picture_saved(tmp_path: Path) -> None:
    gateway, out = Gateway(), io.StringIO()
    code = await edit_via_gateway("http://gateway.test", "lk_test", "luna", "at the beach", tmp_path / "pic.png",
                                  30.0, PlainProgress(out), transport=httpx.MockTransport(gateway))
    assert code == 0
    assert gateway.resumed_from == [None, "2"]
    assert (tmp_path / "pic.png").read_bytes() == PICTURE
    assert out.getvalue().splitlines() == [
        f"chain {CHAIN} submitted",
        "planned by rules: pose; threshold 40",
        "step 1/1 pose attempt 1: rendering (seed 5)",
        "step 1/1 pose: accepted attempt 1 (score 70.0)",
        "completed: 1 steps",
        f"final image: {tmp_path / 'pic.png'}",
    ]


async def test_a_refusal_is_the_gateways_own_detail(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": "no_reference", "detail": "Luna has no reference photo yet"})

    with pytest.raises(CliError) as refused:
        await edit_via_gateway("http://gateway.test", "lk_test", "luna", "x", tmp_path, 30.0,
                               PlainProgress(io.StringIO()), transport=httpx.MockTransport(refuse))
    assert str(refused.value) == ("the gateway at http://gateway.test answered 409: Luna has no reference photo yet "
                                  "(no_reference)")


async def test_a_photo_path_is_refused_with_a_key(tmp_path: Path) -> None:
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"jpeg")
    with pytest.raises(CliError, match="character id, not a photo"):
        await edit_via_gateway("http://gateway.test", "lk_test", str(photo), "x", tmp_path, 30.0,
                               PlainProgress(io.StringIO()), transport=httpx.MockTransport(lambda r: httpx.Response(500)))
