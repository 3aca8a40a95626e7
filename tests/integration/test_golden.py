"""`likeness golden record` / `verify` against the running system: real NATS, Postgres, HTTP and dlib.

The planner, renderer and facecheck run as their real Runtimes in this process; the renderer renders on the
fake ComfyUI (real HTTP + websocket), whose output is the uploaded input with the graph's `ImageBlur` nodes
applied, as ComfyUI would. The built-in templates have none, so a chain's steps keep the face; "the template
changed" is a renderer started with a templates folder whose copy of the template blurs before saving (a
post-processing node added to the graph), which is what a careless template edit does to every picture.
`likeness edit`, `record` and `verify` run as the real command, in subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from PIL import Image, ImageFilter

from contracts import REGISTRY, GoldenChainRecorded
from contracts.streams import chain_stream, golden_stream
from contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM
from services.facecheck.loading import load_encoder
from services.facecheck.service import build_runtime as facecheck_runtime
from services.facecheck.settings import FacecheckSettings
from services.planner.service import build_runtime as planner_runtime
from services.planner.settings import PlannerSettings
from services.renderer.service import build_runtime as renderer_runtime
from services.renderer.settings import RendererSettings
from services.renderer.templates import BUILTIN_DIR
from services.runtime.database import create_engine
from services.runtime.eventstore import EventStore
from services.runtime.settings import RuntimeSettings
from tests.conftest import REPO, Backends, service_env
from tests.faces import face_of
from tests.fakes.comfyui import FakeComfyUI, Scenario, same_as_input
from tests.runtimes import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TWO_STEPS = "put her on a beach at sunset, in a red summer dress"
BLUR_RADIUS = 20
_FRESH = re.compile(r"^chain ([0-9a-f-]{36}): re-rendering \d+ step\(s\) as chain ([0-9a-f-]{36})$", re.MULTILINE)


def with_blur_nodes(graph: dict, input_bytes: bytes | None) -> bytes:
    """The fake ComfyUI's output: the input (as the default policy has it) through every ImageBlur node."""
    out = same_as_input(graph, input_bytes)
    blurs = [node for node in graph.values() if node.get("class_type") == "ImageBlur"]
    if not blurs:
        return out
    with Image.open(io.BytesIO(out)) as opened:
        image = opened.convert("RGB")
    for node in blurs:
        image = image.filter(ImageFilter.GaussianBlur(node["inputs"]["blur_radius"]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def blurring_templates(folder: Path, names: set[str], suffix: str = "") -> Path:
    """Copies of the built-in templates `names` (named `<name><suffix>`) with an ImageBlur between the decoded
    picture and the output."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        graph = json.loads((BUILTIN_DIR / f"{name}.json").read_text())
        (output,) = [node for node in graph.values() if node["_meta"]["title"] == "output"]
        graph["blur"] = {"class_type": "ImageBlur", "_meta": {"title": "Image Blur"},
                         "inputs": {"image": output["inputs"]["images"], "blur_radius": BLUR_RADIUS, "sigma": 6.0}}
        output["inputs"]["images"] = ["blur", 0]
        (folder / f"{name}{suffix}.json").write_text(json.dumps(graph, indent=2))
    return folder


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


class System:
    """The test backends, the fake ComfyUI and the services' settings; renderer and facecheck started on demand."""

    def __init__(self, backends: Backends, comfy_url: str) -> None:
        self.backends = backends
        self.comfy_url = comfy_url
        self.common = dict(nats_url=backends.nats_url, database_url=backends.database_url, environment="test",
                           ack_wait_s=10.0, retry_delay_s=0.2, max_deliver=3, graceful_timeout_s=5.0)
        self.encoder = load_encoder(FacecheckSettings(**self.common))  # dlib, loaded once for every facecheck

    @asynccontextmanager
    async def services(self, *, renderer: bool = True, facecheck: bool = True,
                       templates_dir: Path | None = None) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if renderer:
                await stack.enter_async_context(running(renderer_runtime(RendererSettings(
                    **self.common, comfyui_urls=(self.comfy_url,), templates_dir=templates_dir))))
            if facecheck:
                await stack.enter_async_context(running(facecheck_runtime(
                    FacecheckSettings(**self.common), encoder_factory=lambda _settings: self.encoder)))
            yield

    async def drained(self, timeout_s: float = 60.0) -> None:
        """Until the renderer's and facecheck's work queues hold no command, delivered or not."""
        nc = await nats.connect(self.backends.nats_url, connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5)
            async with asyncio.timeout(timeout_s):
                while True:
                    infos = [await js.consumer_info(COMMANDS_STREAM, name) for name in ("renderer", "facecheck")]
                    if all(info.num_pending == 0 and info.num_ack_pending == 0 for info in infos):
                        return
                    await asyncio.sleep(0.2)
        finally:
            await nc.drain()

    async def likeness(self, *args: str, timeout_s: float = 180.0) -> Done:
        """The `likeness` command against these backends, in a subprocess (this loop keeps serving)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.launcher.cli", *args, cwd=REPO, env=service_env(self.backends),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
        assert proc.returncode is not None
        return Done(proc.returncode, stdout.decode(), stderr.decode())


@pytest.fixture(scope="module")
async def system(backends: Backends) -> AsyncIterator[System]:
    """The planner for the whole module; the fake ComfyUI that applies the graph's blur nodes."""
    before = await durables(backends.nats_url)
    async with FakeComfyUI(Scenario(image_for=with_blur_nodes)) as comfy:
        system = System(backends, comfy.url)
        async with running(planner_runtime(PlannerSettings(**system.common))):
            yield system
    # The durable consumers these services made go with them, as in the other tests that run whole services.
    nc = await nats.connect(backends.nats_url, connect_timeout=5)
    try:
        for stream_name, name in await durables(backends.nats_url) - before:
            await nc.jetstream(timeout=5).delete_consumer(stream_name, name)
    finally:
        await nc.drain()


async def durables(nats_url: str) -> set[tuple[str, str]]:
    nc = await nats.connect(nats_url, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=5)
        found = set()
        for stream_name in (COMMANDS_STREAM, EVENTS_STREAM):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                found |= {(stream_name, c.name) for c in await js.consumers_info(stream_name)}
        return found
    finally:
        await nc.drain()


@pytest.fixture(scope="module")
async def pinned(system: System, tmp_path_factory: pytest.TempPathFactory) -> GoldenChainRecorded:
    """A two-step chain made with the built-in templates and pinned with `likeness golden record`."""
    workdir = tmp_path_factory.mktemp("golden")
    photo = workdir / "reference.png"
    photo.write_bytes(face_of(0))
    async with system.services():
        edit = await system.likeness("edit", "--character", str(photo), TWO_STEPS, "--timeout", "120",
                                     "--out", str(workdir / "out"))
        assert edit.returncode == 0, edit.stdout + edit.stderr
        chain_id = uuid.UUID(re.search(r"^chain ([0-9a-f-]{36}) submitted$", edit.stdout, re.MULTILINE).group(1))
    recorded = await system.likeness("golden", "record", str(chain_id), "--note", "before the upgrade")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    again = await system.likeness("golden", "record", str(chain_id), "--note", "before the upgrade")
    assert f"chain {chain_id}: already pinned as is" in again.stdout
    return (await pins(system, chain_id))[-1]


async def stream(system: System, stream_id: str) -> list:
    """A stream's messages, straight from the log."""
    engine = create_engine(RuntimeSettings(**system.common))
    try:
        return [r.envelope.open(REGISTRY) for r in await EventStore(engine).read_stream(stream_id)]
    finally:
        await engine.dispose()


async def pins(system: System, chain_id: uuid.UUID) -> list[GoldenChainRecorded]:
    return [pin for pin in await stream(system, golden_stream())
            if isinstance(pin, GoldenChainRecorded) and pin.chain_id == chain_id]


def table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("CHAIN "))
    return [line.split() for line in lines[start + 1:] if line and not line.startswith(("chain ", "PASS", "FAIL",
                                                                                          "NOT CHECKED"))]


async def test_record_pins_every_accepted_step_once(system: System, pinned: GoldenChainRecorded) -> None:
    unknown = uuid.uuid4()
    nothing = await system.likeness("golden", "record", str(pinned.chain_id), str(unknown))
    unpinned = await system.likeness("golden", "verify", str(unknown))

    assert (nothing.returncode, nothing.stderr) == (2, f"error: no chain {unknown} in the log\n")
    assert (unpinned.returncode, unpinned.stderr) == (2, f"error: never pinned: {unknown} (pin with `likeness golden "
                                                         "record CHAIN_ID...`)\n")
    assert len(await pins(system, pinned.chain_id)) == 1  # recorded twice as is, and once with an unknown: one event
    listed = await system.likeness("golden", "list")
    assert listed.returncode == 0, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(str(pinned.chain_id))]
    model = pinned.steps[0].params.model  # the checkpoint, e.g. qwen_image_edit_2509_fp8_e4m3fn.safetensors
    assert line.endswith(f"  2 step(s)  qwen_edit/{model}  (before the upgrade)"), line
    # Pinned again with another note: a second event, and the one `list` and `verify` use.
    renoted = await system.likeness("golden", "record", str(pinned.chain_id), "--note", "reviewed")
    assert renoted.returncode == 0 and f"chain {pinned.chain_id}: pinned, 2 step(s)" in renoted.stdout
    assert [pin.note for pin in await pins(system, pinned.chain_id)] == ["before the upgrade", "reviewed"]
    listed = await system.likeness("golden", "list")
    assert f"{pinned.chain_id}  " in listed.stdout and listed.stdout.rstrip().endswith("(reviewed)")
    assert [s.params.index for s in pinned.steps] == [0, 1] and pinned.note == "before the upgrade"
    assert all(s.score is not None and s.score >= pinned.threshold for s in pinned.steps)
    # Step 2 edited what step 1 kept.
    assert pinned.steps[0].input_image == pinned.reference_image and pinned.steps[1].input_image == pinned.steps[0].image


async def test_verify_passes_on_an_unchanged_system_and_the_planner_ignores_the_re_renders(
        system: System, pinned: GoldenChainRecorded) -> None:
    async with system.services():
        done = await system.likeness("golden", "verify", str(pinned.chain_id), "--timeout", "120")

    assert done.returncode == 0, done.stdout + done.stderr
    rows = table_rows(done.stdout)
    assert [row[1] for row in rows] == ["1", "2"]
    for row, step in zip(rows, pinned.steps, strict=True):
        assert row[3:5] == [f"{step.score:.1f}", "->"] and row[5] == f"{step.score:.1f}", done.stdout
        assert row[6:] == ["+0.0", "0.0", "same", "ok"], done.stdout
    assert "PASS: 2 step(s) of 1 chain(s) within tolerance" in done.stdout
    # The fresh chain's results reached no chain of the planner: its stream holds nothing.
    fresh = uuid.UUID(_FRESH.search(done.stdout).group(2))
    assert fresh != pinned.chain_id
    assert await stream(system, chain_stream(fresh)) == []


async def test_verify_says_which_service_did_not_answer(system: System, pinned: GoldenChainRecorded) -> None:
    no_renderer = await system.likeness("golden", "verify", str(pinned.chain_id), "--timeout", "3")
    async with system.services(facecheck=False):
        no_facecheck = await system.likeness("golden", "verify", str(pinned.chain_id), "--timeout", "10")
    # Their commands wait in the work queue: the services take them when they come back, for a chain nobody
    # knows; drained here so that no later test's renderer or facecheck gets them.
    async with system.services():
        await system.drained()

    assert no_renderer.returncode == 2, no_renderer.stdout + no_renderer.stderr
    assert f"chain {pinned.chain_id} step 1: no answer from the renderer within 3s (--timeout)" in no_renderer.stdout
    assert no_facecheck.returncode == 2, no_facecheck.stdout + no_facecheck.stderr
    assert f"chain {pinned.chain_id} step 2: no answer from facecheck within 10s (--timeout)" in no_facecheck.stdout
    assert "NOT CHECKED" in no_facecheck.stdout


async def test_verify_fails_naming_the_step_after_the_template_changed(
        system: System, pinned: GoldenChainRecorded, tmp_path: Path) -> None:
    changed = blurring_templates(tmp_path / "templates", {step.params.template for step in pinned.steps})

    async with system.services(templates_dir=changed):
        done = await system.likeness("golden", "verify", str(pinned.chain_id), "--timeout", "120")
    print(done.stdout)  # the table, for the record (pytest -s)

    assert done.returncode == 1, done.stdout + done.stderr
    rows = table_rows(done.stdout)
    assert [(row[1], row[-2], row[-1]) for row in rows] == [("1", "changed", "REGRESSED"), ("2", "changed", "REGRESSED")]
    for step in ("1", "2"):
        assert f"chain {pinned.chain_id} step {step}: image distance" in done.stdout
        assert f"chain {pinned.chain_id} step {step}: score dropped" in done.stdout
        assert f"chain {pinned.chain_id} step {step}: workflow" in done.stdout
    assert "FAIL: a pinned step regressed" in done.stdout


async def test_verify_renders_the_pins_with_a_swapped_in_template(
        system: System, pinned: GoldenChainRecorded, tmp_path: Path) -> None:
    (template,) = {step.params.template for step in pinned.steps}
    folder = blurring_templates(tmp_path / "templates", {template}, suffix="_v2")

    async with system.services(templates_dir=folder):
        kept = await system.likeness("golden", "verify", str(pinned.chain_id), "--timeout", "120")
        new = await system.likeness("golden", "verify", str(pinned.chain_id), "--swap", f"template:{template}=x_v2",
                                    "--swap", f"template:{template}={template}_v2", "--timeout", "120")
        swapped = await system.likeness("golden", "verify", str(pinned.chain_id), "--timeout", "120",
                                        "--swap", f"template:{template}={template}_v2")
        missing = await system.likeness("golden", "verify", str(pinned.chain_id), "--timeout", "120",
                                        "--swap", f"template:{template}=no_such_template")

    assert kept.returncode == 0, kept.stdout + kept.stderr  # the new file alone changes nothing until swapped in
    assert (new.returncode, new.stderr) == (2, f"error: --swap: template {template!r} is swapped for both 'x_v2' and "
                                               f"'{template}_v2'\n")
    assert swapped.returncode == 1, swapped.stdout + swapped.stderr
    assert [(row[1], row[2], row[-1]) for row in table_rows(swapped.stdout)] == [
        ("1", f"{template}_v2", "REGRESSED"), ("2", f"{template}_v2", "REGRESSED")]
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert f"chain {pinned.chain_id} step 1: render failed (validation)" in missing.stdout
    assert "no_such_template" in missing.stdout
