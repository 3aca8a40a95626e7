"""`likeness edit --api-key` end to end: `likeness up` runs every service as its own process (the fake ComfyUI
renders, the real facecheck checks faces). A user signs up, gives the built-in Luna their own face photo
through the HTTP API, and the command with that user's key makes a picture of Luna.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.comfy_script import ComfyScript
from tests.e2e.fakes import FakeComfy
from tests.e2e.stack import REPO, Stack, started
from tests.faces import face_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHAIN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-api-key-e2e")


@pytest.fixture(scope="module")
def stack(workdir: Path, comfy: FakeComfy) -> Iterator[Stack]:
    yield from started(Stack(workdir / "stack", env={"LIKENESS_COMFYUI_URLS": comfy.url}))


def likeness_edit(stack: Stack, *args: str, key: str) -> subprocess.CompletedProcess[str]:
    """`likeness edit` with `key` in LIKENESS_API_KEY; the gateway is the one the stack's run.json records."""
    return subprocess.run([sys.executable, "-m", "services.launcher.cli", "edit", *args], check=False, cwd=REPO,
                          env=stack.cli_env | {"LIKENESS_API_KEY": key}, capture_output=True, text=True,
                          timeout=CHAIN_TIMEOUT_S + 60)


def test_a_users_key_makes_their_picture_of_a_builtin_character(stack: Stack, script: ComfyScript,
                                                                 workdir: Path) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.port}", timeout=60) as browser:
        # The chat service records its built-in characters at start-up.
        deadline = time.monotonic() + 60
        while "luna" not in {c["id"] for c in browser.get("/characters").json() if c["builtin"]}:
            assert time.monotonic() < deadline, browser.get("/characters").text
            time.sleep(0.5)
        key = browser.post("/auth/signup").json()["api_key"]
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.port}", timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as user:
        user_id = user.get("/me").json()["user_id"]
        given = user.post("/characters/upload-image", files={"image": ("me.png", face_of(0))},
                          data={"character_id": "luna"})
        assert given.status_code == 200, f"{given.text}\n{stack.logs()}"
        reference = given.json()["reference"]["sha256"]

    script.reset("same")
    out = workdir / "luna.png"
    run = likeness_edit(stack, "--character", "luna", "on a beach at sunset --seed 7", "--out", str(out),
                        "--timeout", str(CHAIN_TIMEOUT_S), key=key)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{stack.logs()}"
    chain_id = uuid.UUID(run.stdout.split("chain ", 1)[1].split(" submitted", 1)[0])
    recorded = stack.events(chain_id)
    requested = recorded[0].data
    assert (requested["user_id"], requested["character_id"]) == (user_id, "luna")
    assert requested["reference_image"]["sha256"] == reference
    assert recorded[-1].type == "chain.completed"
    assert out.read_bytes() == stack.blob(recorded[-1].data["final_image"]["sha256"])
    # Plain lines (stdout is a pipe): one per event of the chain, none per render tick.
    shown = [line for line in run.stdout.splitlines()
             if not line.startswith(("chain ", "final image: ", "  step "))]
    assert len(shown) == len(recorded), run.stdout

    # Without the user's photo there is no Luna to draw: another user's key is refused, with the reason.
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.port}", timeout=60) as stranger:
        other = stranger.post("/auth/signup").json()["api_key"]
    refused = likeness_edit(stack, "--character", "luna", "on a beach", "--out", str(workdir), key=other)
    assert refused.returncode == 2
    assert "answered 409" in refused.stderr and "(no_reference)" in refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr

    bad = likeness_edit(stack, "--character", "luna", "on a beach", "--out", str(workdir), key="lk_revoked-or-never")
    assert bad.returncode == 2 and "answered 401" in bad.stderr and "(invalid_api_key)" in bad.stderr

