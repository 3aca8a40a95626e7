"""`likeness golden record` / `verify` against the running system: real NATS, Postgres, HTTP and dlib.

The planner, renderer and facecheck run as their real Runtimes in this process; the renderer renders on the
fake ComfyUI (real HTTP + websocket), whose output is the uploaded input with the graph's `ImageBlur` nodes
applied, as ComfyUI would. The built-in templates have none, so a chain's steps keep the face; "the template
changed" is a renderer started with a templates folder whose copy of the template blurs before saving (a
post-processing node added to the graph), which is what a careless template edit does to every picture.
`likeness edit`, `record` and `verify` run as the real command, in subprocesses.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts import GoldenChainRecorded
from contracts.streams import chain_stream
from services.planner.service import build_runtime as planner_runtime
from services.planner.settings import PlannerSettings
from tests.conftest import Backends
from tests.faces import face_of
from tests.fakes.comfyui import FakeComfyUI, Scenario
from tests.integration.golden_system import System, blurring_templates, pins, stream, with_blur_nodes
from tests.runtimes import consumers_removed_after, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TWO_STEPS = "put her on a beach at sunset, in a red summer dress"
_FRESH = re.compile(r"^chain ([0-9a-f-]{36}): re-rendering \d+ step\(s\) as chain ([0-9a-f-]{36})$", re.MULTILINE)


@pytest.fixture(scope="module")
async def system(backends: Backends) -> AsyncIterator[System]:
    """The planner for the whole module; the fake ComfyUI that applies the graph's blur nodes."""
    # The durable consumers these services make go with them, as in the other tests that run whole services.
    async with consumers_removed_after(backends.nats_url), FakeComfyUI(Scenario(image_for=with_blur_nodes)) as comfy:
        system = System(backends, comfy.url)
        async with running(planner_runtime(PlannerSettings(**system.common))):
            yield system


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
    assert "face check changed" not in done.stdout  # the pinned pictures, scored again, score as pinned
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
