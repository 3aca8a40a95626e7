"""The gateway end to end: `likeness up` runs all five services as their own processes (the fake
ComfyUI renders, the real facecheck checks faces); this test is a client of the public HTTP API only.

A face photo becomes a character, a picture of it is asked for, waited on and fetched; its live
event stream replays the whole chain; a chat reply streams; the gallery and the edit tree show it;
another user sees none of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.comfy_script import ComfyScript
from tests.e2e.fakes import FakeComfy
from tests.e2e.stack import Stack, started
from tests.faces import face_of, no_face_image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHAIN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-e2e")


@pytest.fixture(scope="module")
def stack(workdir: Path, comfy: FakeComfy) -> Iterator[Stack]:
    yield from started(Stack(workdir / "stack", env={"LIKENESS_COMFYUI_URLS": comfy.url}))


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.port}", timeout=60) as client:
        yield client


def sse_events(client: httpx.Client, method: str, path: str, **kwargs) -> list[tuple[str | None, str, dict]]:
    """(id, event, data) of a whole event stream (it ends by itself)."""
    found, event_id, event, data = [], None, "message", []
    with client.stream(method, path, **kwargs) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line == "":
                if data:
                    found.append((event_id, event, json.loads("\n".join(data))))
                event_id, event, data = None, "message", []
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                event_id = value if field == "id" else event_id
                event = value if field == "event" else event
                if field == "data":
                    data.append(value)
    return found


def test_a_photo_becomes_a_character_whose_picture_is_made_waited_for_and_fetched(
        stack: Stack, client: httpx.Client, script: ComfyScript) -> None:
    # The chat service records its built-in characters at start-up.
    deadline = time.monotonic() + 60
    while len([c for c in client.get("/characters").json() if c["builtin"]]) < 15:
        assert time.monotonic() < deadline, client.get("/characters").text
        time.sleep(0.5)

    refused = client.post("/characters/upload-image", files={"image": ("scene.png", no_face_image())},
                          data={"name": "Nobody"})
    assert refused.status_code == 422 and refused.json()["error"] == "no_face", refused.text

    photo = face_of(0)
    response = client.post("/characters/upload-image", files={"image": ("me.png", photo)},
                           data={"name": "Mia", "gender": "woman", "occupation": "pilot"})
    assert response.status_code == 201, f"{response.text}\n{stack.logs()}"
    mia = response.json()
    assert mia["has_reference"] and not mia["builtin"]
    assert client.get(f"/avatar/{mia['id']}").content == photo
    assert mia["id"] in {c["id"] for c in client.get("/characters").json()}

    script.reset("same")
    job = client.post("/chat/generate-image", json={"character_id": mia["id"], "request": "put her on a beach"})
    assert job.status_code == 202, job.text
    job_id = job.json()["job_id"]
    done = client.get(f"/wait/{job_id}", params={"timeout": CHAIN_TIMEOUT_S}, timeout=CHAIN_TIMEOUT_S + 30).json()
    assert done["status"] == "completed", f"{done}\n{stack.logs()}"
    picture = client.get(done["image_url"])
    assert picture.status_code == 200 and picture.content == stack.blob(done["result"]["sha256"])
    assert picture.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert client.get(done["result"]["thumb_url"]).headers["content-type"] == "image/webp"
    assert client.get(f"/chat/job/{job_id}").json()["status"] == "completed"

    events = sse_events(client, "GET", f"/chains/{job_id}/events")
    persisted = [(int(i), e) for i, e, _ in events if i is not None]
    recorded = stack.events(done["chain_id"])
    assert persisted == [(r.version, r.type) for r in recorded]
    assert persisted[-1][1] == "chain.completed"
    resumed = sse_events(client, "GET", f"/chains/{job_id}/events", headers={"Last-Event-ID": "2"})
    assert [int(i) for i, _, _ in resumed if i is not None] == [r.version for r in recorded[2:]]

    chain = client.get(f"/chains/{job_id}").json()
    assert chain["status"] == "completed" and chain["final_image"]["sha256"] == done["result"]["sha256"]
    gallery = client.get("/me/images").json()
    assert done["result"]["sha256"] in {g["sha256"] for g in gallery if g["chain_id"] == job_id}
    tree = client.get("/me/tree").json()["chains"]
    assert job_id in {node["chain_id"] for node in tree}

    with httpx.Client(base_url=f"http://127.0.0.1:{stack.port}", timeout=30) as stranger:
        assert stranger.get(f"/chat/job/{job_id}").status_code == 404
        assert stranger.get(done["image_url"]).status_code == 404
        assert stranger.get(f"/avatar/{mia['id']}").status_code == 404
        assert mia["id"] not in {c["id"] for c in stranger.get("/characters").json()}


def test_a_chat_reply_streams_and_a_picture_asked_for_in_chat_is_made(stack: Stack, client: httpx.Client,
                                                                      script: ComfyScript) -> None:
    builtin = next(c for c in client.get("/characters").json() if c["builtin"])
    events = sse_events(client, "POST", "/chat/stream", json={"character_id": builtin["id"], "text": "hello!"})
    kinds = [e for _, e, _ in events]
    assert kinds[0] == "accepted" and kinds[-1] == "reply" and "delta" in kinds, events
    reply = events[-1][2]
    assert reply["offline"] is True and reply["text"]

    response = client.post("/characters/upload-image", files={"image": ("me.png", face_of(0))},
                           data={"name": "Lena"})
    assert response.status_code == 201, response.text
    lena = response.json()
    script.reset("same")
    events = sse_events(client, "POST", "/chat/stream",
                        json={"character_id": lena["id"], "text": "send me a picture of you on a beach"})
    reply = events[-1][2]
    assert events[-1][1] == "reply" and reply["chain_id"], events
    done = client.get(f"/wait/{reply['chain_id']}", params={"timeout": CHAIN_TIMEOUT_S},
                      timeout=CHAIN_TIMEOUT_S + 30).json()
    assert done["status"] == "completed", f"{done}\n{stack.logs()}"
    cost = client.get("/cost").json()
    assert cost["user"]["total"]["replies"] >= 2
