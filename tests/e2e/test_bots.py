"""The bot API end to end: `likeness up` runs every service as its own process, the fake ComfyUI renders
(a text-to-image job without an input: a grey picture of the latent's size, as ComfyUI's output has), the
real facecheck scores; this test is a bot, a client of the public HTTP API with one API key and two nicks.

A character request with `--count 2` is polled with /job and waited for with /wait and gives a grid; a
plain text-to-image request is planned as one step on the text-to-image template, rendered without an
input and kept without a face check, and recorded, audited and streamed like any chain; the two nicks do
not see each other's jobs and another bot sees neither.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.comfy_script import ComfyScript
from tests.e2e.fakes import FakeComfy
from tests.e2e.stack import Recorded, Stack, started
from tests.faces import face_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHAIN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bots-e2e")


@pytest.fixture(scope="module")
def stack(workdir: Path, comfy: FakeComfy) -> Iterator[Stack]:
    yield from started(Stack(workdir / "stack", env={"LIKENESS_COMFYUI_URLS": comfy.url}))


def bot_client(stack: Stack) -> httpx.Client:
    """A new bot: a client holding its own API key."""
    base = f"http://127.0.0.1:{stack.port}"
    key = httpx.post(f"{base}/auth/signup", timeout=30).json()["api_key"]
    return httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def bot(stack: Stack) -> Iterator[httpx.Client]:
    with bot_client(stack) as client:
        yield client


def waited(stack: Stack, bot: httpx.Client, job_id: str) -> dict:
    done = bot.get(f"/wait/{job_id}", params={"timeout": CHAIN_TIMEOUT_S}, timeout=CHAIN_TIMEOUT_S + 30).json()
    assert done["done"], f"{done}\n{stack.logs()}"
    return done


def types(events: list[Recorded]) -> list[str]:
    return [event.type for event in events]


def test_a_plain_text_to_image_request_is_drawn_without_a_face_check(stack: Stack, bot: httpx.Client,
                                                                      script: ComfyScript) -> None:
    script.reset("same")
    answer = bot.post("/request", json={"message": "a lighthouse at dawn -w 512 -h 384 --seed 5", "nick": "bob"})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["character_id"] is None and isinstance(job["queue_position"], int) and job["queue_position"] >= 0
    first_poll = bot.get(f"/job/{job['job_id']}").json()
    assert first_poll["status"] in ("queued", "processing", "completed")

    done = waited(stack, bot, job["job_id"])
    assert done["status"] == "completed", f"{done}\n{stack.logs()}"
    events = stack.events(done["chain_id"])
    assert types(events) == ["chain.requested", "chain.planned", "chain.step_requested", "chain.step_rendered",
                             "chain.step_accepted", "chain.completed"], stack.logs()
    requested, planned, step_requested, _, kept, _ = (e.data for e in events)
    assert requested["mode"] == "t2i" and requested["character_id"] is None and requested["user_id"].endswith("/bob")
    (step,) = planned["steps"]
    assert (step["kind"], step["template"], step["width"], step["height"], step["seed"]) == (
        "generate", "sdxl_t2i", 512, 384, 5)
    assert step_requested["input_image"] is None
    assert (kept["decision"], kept["score"]) == ("unscored", None)
    # ComfyUI drew at the latent's size, from the graph the renderer bound.
    assert script.served() == [{"outcome": "same", "seed": 5}]

    result = bot.get(f"/job/{job['job_id']}").json()
    assert result["status"] == "completed" and result["nick"] == "bob" and result["error"] is None
    picture = bot.get(result["result"]["url"])
    assert hashlib.sha256(picture.content).hexdigest() == result["result"]["sha256"]
    with Image.open(io.BytesIO(picture.content)) as image:
        assert image.size == (512, 384)

    audit = bot.get(f"/chains/{job['job_id']}/audit").json()
    assert audit["steps"][0]["attempts"][0]["decision"] == "accepted (not scored: text-to-image)"
    streamed = sse(bot, f"/chains/{job['job_id']}/events")
    assert [event for event, _ in streamed if event.startswith("chain.")] == types(events)


def test_a_character_request_with_count_2_is_polled_waited_for_and_gives_a_grid(
        stack: Stack, bot: httpx.Client, script: ComfyScript) -> None:
    # The chat service records its built-in characters at start-up; Luna's face is each nick's own.
    deadline = time.monotonic() + 60
    while "luna" not in {c["id"] for c in bot.get("/characters").json()}:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.5)
    uploaded = bot.post("/characters/upload-image", headers={"X-Likeness-Nick": "alice"},
                        files={"image": ("me.png", face_of(0))}, data={"character_id": "luna"})
    assert uploaded.status_code == 200, f"{uploaded.text}\n{stack.logs()}"

    script.reset("same", "same")
    answer = bot.post("/request", json={"message": "@luna on a beach at sunset -c 2", "nick": "alice"})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    polled = []
    deadline = time.monotonic() + CHAIN_TIMEOUT_S
    while (status := bot.get(f"/job/{job_id}").json()["status"]) not in ("completed", "failed"):
        polled.append(status)
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.2)
    assert set(polled) <= {"queued", "processing"}
    assert status == "completed", f"{bot.get(f'/job/{job_id}').json()}\n{stack.logs()}"

    done = waited(stack, bot, job_id)
    assert done["batch"]["status"] == "completed" and done["batch"]["count"] == 2
    job = bot.get(f"/job/{job_id}").json()
    assert job["result"]["grid"] is True and len(job["result"]["pictures"]) == 2
    grid = bot.get(job["result"]["url"])
    assert grid.headers["content-type"] == "image/webp"
    assert hashlib.sha256(grid.content).hexdigest() == job["result"]["sha256"]
    for chain_id in (p["job_id"] for p in job["result"]["pictures"]):
        events = stack.events(chain_id)
        assert "chain.step_scored" in types(events) and types(events)[-1] == "chain.completed"
        assert events[0].data["character_id"] == "luna" and events[0].data["user_id"].endswith("/alice")

    # Alice's nick and the bot see the job; Bob, another nick of the same bot, and another bot do not.
    assert bot.get(f"/job/{job_id}", headers={"X-Likeness-Nick": "alice"}).status_code == 200
    assert bot.get(f"/job/{job_id}", headers={"X-Likeness-Nick": "bob"}).json()["error"] == "chain_not_found"
    with bot_client(stack) as other:
        for path in (f"/job/{job_id}", f"/wait/{job_id}?timeout=1", f"/batch/{job_id}", job["result"]["url"]):
            assert other.get(path).status_code == 404, path


def test_a_batch_of_different_requests_ends_with_its_grid(stack: Stack, bot: httpx.Client,
                                                          script: ComfyScript) -> None:
    script.reset("same", "same")
    answer = bot.post("/batch", json={"requests": ["a red kite -w 256 -h 256", "a blue boat -w 320 -h 256"],
                                      "nick": "bob"})
    assert answer.status_code == 202, answer.text
    batch = answer.json()
    done = waited(stack, bot, batch["batch_id"])
    assert done["batch"]["status"] == "completed", f"{done}\n{stack.logs()}"
    listed = bot.get(f"/batch/{batch['batch_id']}").json()
    assert listed["status"] == "completed" and [j["status"] for j in listed["jobs"]] == ["completed"] * 2
    assert [(j["picture"]["width"], j["picture"]["height"]) for j in listed["jobs"]] == [(256, 256), (320, 256)]
    assert bot.get(listed["grid"]["url"]).status_code == 200


def sse(client: httpx.Client, path: str) -> list[tuple[str, dict]]:
    """(event, data) of a whole event stream (it ends by itself after the chain's end)."""
    found, event, data = [], "message", []
    with client.stream("GET", path) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line == "":
                if data:
                    found.append((event, json.loads("\n".join(data))))
                event, data = "message", []
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                event = value.strip() if field == "event" else event
                if field == "data":
                    data.append(value.removeprefix(" "))
    return found
