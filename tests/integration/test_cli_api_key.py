"""`likeness edit --api-key` against a real gateway (real NATS and Postgres): the key's user gives a built-in
character their own reference photo, and the command, run as a separate process, makes that user's
picture of it; a bad key is one line on stderr and exit code 2. And the gateway's GET /asyncapi.json.

The gateway sends the chain's RequestChain on the bus; the test plays the planner's part by writing the
chain's events into the log (ChainScript), which the gateway streams back to the command.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts import Envelope, ImageRef
from contracts.asyncapi import asyncapi_document
from tests.conftest import REPO, Backends
from tests.e2e.stack import clean_env
from tests.faces import face_of
from tests.fakes.gateway_world import GatewayWorld
from tests.integration.gateway_helpers import form

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLI_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
async def world(backends: Backends) -> AsyncIterator[GatewayWorld]:
    world = await GatewayWorld(backends.nats_url, backends.database_url, gateway_command_timeout_s=5.0,
                               gateway_sse_heartbeat_s=1.0).start()
    yield world
    await world.close()


async def signed_up(world: GatewayWorld) -> str:
    async with world.client() as browser:
        response = await browser.post("/auth/signup")
        assert response.status_code == 201, response.text
        return response.json()["api_key"]


async def likeness(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    """The `likeness` command as its own process, its stdout a pipe (so it prints plain lines)."""
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "services.launcher.cli", *args, cwd=REPO,
                                                env=clean_env(**env), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)


async def finished(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    stdout, stderr = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_with_a_key_the_command_makes_that_users_picture_of_a_builtin(
        world: GatewayWorld, requests_seen: list[Envelope], tmp_path: Path) -> None:
    luna = f"luna-{uuid.uuid4().hex[:8]}"
    await world.chat.builtin(luna, "Luna")
    await world.gateway.projector.sync()
    key = await signed_up(world)
    async with world.client(headers={"Authorization": f"Bearer {key}"}) as user:
        user_id = (await user.get("/me")).json()["user_id"]
        given = await user.post("/characters/upload-image", **form(face_of(2), character_id=luna))
        assert given.status_code == 200, given.text
    reference = ImageRef.model_validate(given.json()["reference"])

    out = tmp_path / "luna.png"
    process = await likeness("edit", "--character", luna, "at the beach at sunset", "--out", str(out),
                             "--timeout", str(CLI_TIMEOUT_S),
                             env={"LIKENESS_API_KEY": key, "LIKENESS_GATEWAY_URL": world.url})
    async with asyncio.timeout(CLI_TIMEOUT_S):
        while not requests_seen:
            assert process.returncode is None, await finished(process)
            await asyncio.sleep(0.05)
    (sent,) = requests_seen
    # The gateway sent it as the key's user, with that user's own photo of the built-in character.
    assert (sent.type, sent.actor, sent.data["user_id"]) == ("chain.request", user_id, user_id)
    assert (sent.data["character_id"], sent.data["request_text"]) == (luna, "at the beach at sunset")
    assert sent.data["reference_image"]["sha256"] == reference.sha256

    script = world.chain(chain_id=uuid.UUID(sent.data["chain_id"]), user_id=user_id, character_id=luna,
                         reference=reference, steps=2, request_text="at the beach at sunset")
    await script.finish()
    code, stdout, stderr = await finished(process)
    assert code == 0, stdout + stderr
    assert out.read_bytes() == await world.blobs.get(script.images[-1].sha256)
    assert stdout.splitlines() == [
        f"chain {script.chain_id} submitted",
        "requested: 'at the beach at sunset'",
        "planned by rules: background -> outfit; threshold 40",
        "step 1/2 background attempt 1: rendering (seed 1234)",
        "step 1/2 background attempt 1: rendered by draft on fake",
        "step 1/2 background attempt 1: face score 80.0 (threshold 40)",
        "step 1/2 background: accepted attempt 1 (score 80.0)",
        "step 2/2 outfit attempt 1: rendering (seed 1235)",
        "step 2/2 outfit attempt 1: rendered by draft on fake",
        "step 2/2 outfit attempt 1: face score 79.0 (threshold 40)",
        "step 2/2 outfit: accepted attempt 1 (score 79.0)",
        "completed: 2 steps",
        f"final image: {out}",
    ]


async def test_a_bad_key_is_one_line_and_exit_code_2(world: GatewayWorld, requests_seen: list[Envelope],
                                                     tmp_path: Path) -> None:
    process = await likeness("edit", "--api-key", "lk_not-a-key", "--gateway", world.url, "--character", "luna",
                             "at the beach", "--out", str(tmp_path), env={})
    code, stdout, stderr = await finished(process)
    assert code == 2
    assert stderr == (f"error: the gateway at {world.url} answered 401: the API key is not valid (or was revoked); "
                      "POST /auth/signup makes a new one (invalid_api_key)\n")
    assert stdout == ""
    assert requests_seen == []


async def test_an_unreachable_gateway_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    from services.launcher.embedded import free_port

    nowhere = f"http://127.0.0.1:{free_port()}"
    process = await likeness("edit", "--character", "luna", "at the beach", "--out", str(tmp_path),
                             env={"LIKENESS_API_KEY": "lk_whatever", "LIKENESS_GATEWAY_URL": nowhere})
    code, _, stderr = await finished(process)
    assert code == 2
    assert stderr.startswith(f"error: cannot reach the gateway at {nowhere} (ConnectError")
    assert stderr.count("\n") == 1 and "Traceback" not in stderr


async def test_the_gateway_serves_the_bus_asyncapi_document(world: GatewayWorld) -> None:
    async with world.client() as anyone:
        response = await anyone.get("/asyncapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(json.dumps(asyncapi_document()))
    assert response.json()["channels"]["chain.request"]["address"] == "likeness.cmd.chain.request"
