"""Chains end to end: `likeness up` runs every service as its own process on real NATS and Postgres.

Pictures are rendered by the fake ComfyUI (its own process, real HTTP + websocket), whose output
each test scripts through a queue file (tests/e2e/comfy_script.py: "same", "other", "noface",
"error"), and face-checked by the real facecheck service (dlib). Chains are submitted with
`likeness edit` as a subprocess; each test then reads the chain's stream from the `events` table
and asserts the exact sequence of event types plus the facts that matter.

Three deployments, each started once for the tests that need it (a class each):
  TestDeployment   all five services; the renderer knows two ComfyUI backends, one of them down
  TestLlmPlanner   the planner asks a fake OpenAI-compatible server for plans
  TestUnreachable  the renderer's only ComfyUI backend is a closed port
  TestRemoteEngines  photoreal pictures route to an image edit API, then RunPod serverless, then ComfyUI
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.planner_llm import plan_json
from tests.e2e.comfy_script import ERROR_MESSAGE, ComfyScript
from tests.e2e.fakes import FakeCloud, FakeComfy, FakeLlm
from tests.e2e.stack import CHAIN_SERVICES, REPO, EditRun, Recorded, Stack, started
from tests.fakes.comfyui import closed_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

THRESHOLD = 40.0
CHAIN_TIMEOUT_S = 120.0

REQUESTED, PLANNED, REFUSED = "chain.requested", "chain.planned", "chain.refused"
STEP_REQUESTED, RENDERED, SCORED = "chain.step_requested", "chain.step_rendered", "chain.step_scored"
ACCEPTED, RETRIED, STEP_FAILED = "chain.step_accepted", "chain.step_retried", "chain.step_failed"
COMPLETED, FAILED = "chain.completed", "chain.failed"
# One attempt rendered, scored above the threshold and kept.
GOOD_ATTEMPT = [STEP_REQUESTED, RENDERED, SCORED, ACCEPTED]
# One attempt rendered, scored below the threshold and retried.
DRIFTED_ATTEMPT = [STEP_REQUESTED, RENDERED, SCORED, RETRIED]

THREE_STEPS = "put her on a beach at sunset, sitting on a towel, in a red summer dress"
ONE_STEP = "put her on a beach at sunset"


# -- shared processes and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chains")


def types(events: list[Recorded]) -> list[str]:
    return [event.type for event in events]


def of_type(events: list[Recorded], kind: str) -> list[dict]:
    return [event.data for event in events if event.type == kind]


def only(events: list[Recorded], kind: str) -> dict:
    (data,) = of_type(events, kind)
    return data


def finished(stack: Stack, run: EditRun, expected_exit: int) -> list[Recorded]:
    """The chain's events, after checking `likeness edit` ended as expected."""
    events = stack.events(run.chain_id)
    assert run.returncode == expected_exit, (
        f"`likeness edit` exited {run.returncode}, expected {expected_exit}\nstdout:\n{run.stdout}\n"
        f"stderr:\n{run.stderr}\nevents: {types(events)}\n{stack.logs()}")
    return events


def _save_node(template: str) -> str:
    """The id of the SaveImage node in a built-in workflow template."""
    graph = json.loads((REPO / "services" / "renderer" / "workflows" / f"{template}.json").read_text())
    (node,) = [node_id for node_id, node in graph.items() if node.get("class_type") == "SaveImage"]
    return node


def assert_chained_inputs(events: list[Recorded]) -> None:
    """Step 0 edits the reference image; each later step edits the image accepted at the step before."""
    reference = only(events, REQUESTED)["reference_image"]
    accepted = {a["step"]: a["image"] for a in of_type(events, ACCEPTED)}
    for requested in of_type(events, STEP_REQUESTED):
        expected = reference if requested["step"] == 0 else accepted[requested["step"] - 1]
        assert requested["input_image"] == expected


# -- the usual deployment: every service, two ComfyUI backends of which one is down ------------------


class TestDeployment:
    @pytest.fixture(scope="class")
    @classmethod
    def down_url(cls) -> str:
        return closed_url()

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, workdir: Path, comfy: FakeComfy, down_url: str) -> Iterator[Stack]:
        # The closed port is listed first: with no health known yet it would be tried first.
        yield from started(Stack(workdir / "deployment", env={
            "LIKENESS_COMFYUI_URLS": f"{down_url},{comfy.url}",
            "LIKENESS_CONNECT_TIMEOUT_S": "2", "LIKENESS_HEALTH_TIMEOUT_S": "2",
        }))

    def test_a_three_step_plan_is_accepted_first_time(self, stack: Stack, comfy: FakeComfy, script: ComfyScript,
                                                      photo: Path) -> None:
        script.reset("same", "same", "same")

        run = stack.edit(photo, THREE_STEPS, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *GOOD_ATTEMPT * 3, COMPLETED]
        planned = only(events, PLANNED)
        assert planned["planner"] == "rules" and planned["threshold"] == THRESHOLD
        assert [s["kind"] for s in planned["steps"]] == ["background", "outfit", "pose"]
        requested = of_type(events, STEP_REQUESTED)
        assert [(r["step"], r["attempt"], r["seed"]) for r in requested] == [
            (s["index"], 1, s["seed"]) for s in planned["steps"]]
        assert_chained_inputs(events)
        assert {(r["engine"], r["backend"]) for r in of_type(events, RENDERED)} == {("comfyui", comfy.url)}
        scores = [s["score"] for s in of_type(events, SCORED)]
        assert all(score >= THRESHOLD for score in scores), scores
        assert all(s["faces_found"] == 1 for s in of_type(events, SCORED))
        accepted = of_type(events, ACCEPTED)
        assert [(a["step"], a["attempt"], a["decision"]) for a in accepted] == [(i, 1, "threshold") for i in range(3)]
        completed = only(events, COMPLETED)
        assert completed["step_images"] == [a["image"] for a in accepted]
        assert completed["final_image"] == accepted[-1]["image"]
        # The final picture is in the blob store, and it is what `likeness edit` saved.
        final = stack.blob(completed["final_image"]["sha256"])
        saved = Path(run.stdout.split("final image: ", 1)[1].splitlines()[0])
        assert saved.read_bytes() == final
        assert "completed: 3 steps" in run.stdout
        # ComfyUI rendered exactly the three planned seeds.
        assert script.served() == [{"outcome": "same", "seed": s["seed"]} for s in planned["steps"]]
        # Logs written to files carry no terminal colour codes (FastStream's own handler colours everything).
        assert "\x1b[" not in stack.logs(limit=10**9)

    def test_a_step_that_fails_the_face_check_passes_on_retry(self, stack: Stack, script: ComfyScript,
                                                              photo: Path) -> None:
        script.reset("other", "same")

        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *DRIFTED_ATTEMPT, *GOOD_ATTEMPT, COMPLETED]
        first, second = of_type(events, STEP_REQUESTED)
        drifted, passed = of_type(events, SCORED)
        retried = only(events, RETRIED)
        assert drifted["score"] < THRESHOLD and drifted["attempt"] == 1
        assert retried["next_attempt"] == 2 and retried["previous_score"] == drifted["score"]
        assert retried["new_seed"] != first["seed"]
        assert retried["rung"] == "reseed"  # the ladder's first rung: a new seed, nothing else changed
        assert "below threshold" in retried["reason"]
        assert (second["attempt"], second["seed"]) == (2, retried["new_seed"])
        assert second["input_image"] == first["input_image"]  # the retry edits the same input again
        assert passed["score"] >= THRESHOLD and passed["attempt"] == 2
        assert only(events, ACCEPTED)["attempt"] == 2
        stack.blob(only(events, COMPLETED)["final_image"]["sha256"])
        assert script.served() == [{"outcome": "other", "seed": first["seed"]},
                                   {"outcome": "same", "seed": retried["new_seed"]}]
        # The audit read model tells the same story.
        audit = stack.cli("audit", str(run.chain_id))
        assert audit.returncode == 0, audit.stderr
        assert f"attempt 1: seed {first['seed']} score {drifted['score']:.1f} -> retried" in audit.stdout
        assert f"attempt 2: seed {retried['new_seed']} score {passed['score']:.1f} -> accepted" in audit.stdout

    def test_a_step_that_drifts_on_every_rung_fails_the_chain(self, stack: Stack, script: ComfyScript,
                                                              photo: Path) -> None:
        # Three retries and the face restore: five renders, none of them the character.
        script.reset("other", "noface", "other", "other", "other")

        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 1)
        assert types(events) == [REQUESTED, PLANNED, *DRIFTED_ATTEMPT * 4, STEP_REQUESTED, RENDERED, SCORED, FAILED]
        requested, scored = of_type(events, STEP_REQUESTED), of_type(events, SCORED)
        assert [s["score"] < THRESHOLD for s in scored] == [True] * 5
        assert (scored[1]["faces_found"], scored[1]["score"]) == (0, 0.0)  # the picture with no face
        seeds = [r["seed"] for r in requested]
        assert len(set(seeds)) == 5
        failed = only(events, FAILED)
        assert failed["step"] == 0
        assert [(a["attempt"], a["seed"], a["score"]) for a in failed["attempts"]] == [
            (i + 1, seeds[i], scored[i]["score"]) for i in range(5)]
        assert "all 5 attempts" in failed["reason"]
        assert "FAILED at step 1" in run.stdout
        assert [s["seed"] for s in script.served()] == seeds

    def test_a_drifting_step_climbs_the_ladder_and_the_face_restore_of_its_best_attempt_is_kept(
            self, stack: Stack, script: ComfyScript, photo: Path) -> None:
        script.reset("other", "noface", "other", "other", "restored")

        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *DRIFTED_ATTEMPT * 4, *GOOD_ATTEMPT, COMPLETED]
        planned = only(events, PLANNED)
        assert (planned["retry_ladder"], planned["restore_template"]) == (True, "face_restore")
        retried, requested = of_type(events, RETRIED), of_type(events, STEP_REQUESTED)
        scored = of_type(events, SCORED)
        rungs = [r["rung"] for r in retried]
        assert rungs[:2] == ["reseed", "lower_denoise"] and rungs[-1] == "face_restore"
        assert rungs[2] in ("lower_lora", "reseed")  # lower_lora only when the plan brought a style/concept LoRA
        assert [r["next_attempt"] for r in retried] == [2, 3, 4, 5]
        # What reached ComfyUI is what each rung said: the lowered denoise from attempt 3 on, then the restore
        # template, which loads the best attempt's picture and the reference.
        jobs = script.served_jobs()
        assert [j["seed"] for j in jobs] == [r["seed"] for r in requested]
        assert jobs[2]["denoise"] == retried[1]["denoise"] == jobs[3]["denoise"] < (jobs[0]["denoise"] or 1.0)
        assert [j["loads"] for j in jobs] == [["input_image"]] * 4 + [["input_image", "reference_image"]]
        best = max(scored[:4], key=lambda s: s["score"])
        assert retried[-1]["restores_attempt"] == best["attempt"]
        assert requested[-1]["input_image"] == of_type(events, RENDERED)[best["attempt"] - 1]["image"]
        accepted = only(events, ACCEPTED)
        assert (accepted["attempt"], accepted["decision"]) == (5, "threshold") and accepted["score"] >= THRESHOLD
        audit = stack.cli("audit", str(run.chain_id))
        assert audit.returncode == 0, audit.stderr
        assert "[rung lower_denoise: denoise" in audit.stdout
        assert f"-> accepted [rung face_restore: template face_restore on attempt {best['attempt']}]" in audit.stdout

    def test_a_comfyui_execution_error_fails_the_step_and_the_chain(self, stack: Stack, script: ComfyScript,
                                                                    photo: Path) -> None:
        script.reset("error")

        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 1)
        assert types(events) == [REQUESTED, PLANNED, STEP_REQUESTED, STEP_FAILED, FAILED]
        step_failed, failed = only(events, STEP_FAILED), only(events, FAILED)
        assert step_failed["stage"] == "render" and step_failed["attempt"] == 1
        # The template's SaveImage was sent as a SaveImageWebsocket (no file left on the backend): that node failed.
        node = _save_node(only(events, PLANNED)["steps"][0]["template"])
        reason = step_failed["reason"]
        assert reason == (f"render execution at node {node} (SaveImageWebsocket): "
                          f"node {node} (SaveImageWebsocket) failed: ScriptedRenderError: {ERROR_MESSAGE}")
        assert failed["reason"] == reason
        seed = only(events, STEP_REQUESTED)["seed"]
        assert [(a["attempt"], a["seed"], a["score"], a["reason"]) for a in failed["attempts"]] == [
            (1, seed, None, reason)]
        assert f"FAILED at step 1: {reason}" in run.stdout
        assert script.served() == [{"outcome": "error", "seed": seed}]

    def test_a_down_backend_is_passed_over_for_the_live_one(self, stack: Stack, comfy: FakeComfy, down_url: str,
                                                            script: ComfyScript, photo: Path) -> None:
        script.reset("same")

        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *GOOD_ATTEMPT, COMPLETED]
        rendered = only(events, RENDERED)
        assert rendered["backend"] == comfy.url != down_url
        assert script.served() == [{"outcome": "same", "seed": only(events, STEP_REQUESTED)["seed"]}]
        # Marked down by its first health probe, or by failing over from it: either way before this render.
        assert f"ComfyUI backend {down_url} is down" in stack.log("renderer")

    def test_a_request_the_policy_forbids_is_refused(self, stack: Stack, script: ComfyScript, photo: Path) -> None:
        run = stack.edit(photo, "show her nude on the beach at sunset", timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 1)
        assert types(events) == [REQUESTED, REFUSED]
        refused = only(events, REFUSED)
        assert refused["rule"] == "content_policy.words.user_limit"
        assert "'nude'" in refused["reason"] and "sfw" in refused["reason"]
        assert "refused:" in run.stdout
        assert script.served() == []  # nothing was rendered


# -- the planner with an LLM ----------------------------------------------------------------------


class TestLlmPlanner:
    @pytest.fixture(scope="class")
    @classmethod
    def llm(cls, workdir: Path) -> Iterator[FakeLlm]:
        with FakeLlm(workdir) as fake:
            yield fake

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, workdir: Path, comfy: FakeComfy, llm: FakeLlm) -> Iterator[Stack]:
        # Every service, chat's LLM too (openai 3 once stopped chat at start-up), logging JSON lines.
        yield from started(Stack(workdir / "llm", env={
            "LIKENESS_COMFYUI_URLS": comfy.url,
            "LIKENESS_LLM_BASE_URL": llm.url, "LIKENESS_LLM_MODEL": "fake-model", "LIKENESS_LLM_TIMEOUT_S": "10",
            "LIKENESS_CHAT_LLM_BASE_URL": llm.url, "LIKENESS_CHAT_LLM_MODEL": "fake-model",
            "LIKENESS_LOG_FORMAT": "json",
        }))

    def test_an_invalid_llm_answer_twice_falls_back_to_the_rules(self, stack: Stack, llm: FakeLlm,
                                                                 script: ComfyScript, photo: Path) -> None:
        before = len(llm.requests())
        llm.queue("here is the plan: {steps: [", "```\nstill not json")

        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *GOOD_ATTEMPT, COMPLETED]
        planned = only(events, PLANNED)
        assert planned["planner"] == "rules"
        assert planned["planner_note"].startswith("LLM answer invalid twice: not JSON"), planned["planner_note"]
        assert [s["kind"] for s in planned["steps"]] == ["background"]
        asked = llm.requests()[before:]
        assert len(asked) == 2
        assert all(r["model"] == "fake-model" for r in asked)
        assert asked[0]["messages"][-1] == {"role": "user", "content": ONE_STEP}

    def test_a_valid_llm_plan_is_used(self, stack: Stack, llm: FakeLlm, script: ComfyScript, photo: Path) -> None:
        library = ("background", "Change the background to a quiet library at night, keep the person unchanged")
        reading = ("pose", "Change her pose: reading a book in an armchair, keep her face and outfit unchanged")
        before = len(llm.requests())
        llm.queue(plan_json(reading, library))  # the planner puts background before pose

        run = stack.edit(photo, "in a library at night, reading a book", timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *GOOD_ATTEMPT * 2, COMPLETED]
        planned = only(events, PLANNED)
        assert planned["planner"] == "llm" and planned["planner_note"] is None
        assert [s["kind"] for s in planned["steps"]] == ["background", "pose"]
        for step, (_, instruction) in zip(planned["steps"], (library, reading), strict=True):
            assert instruction in step["prompt"]
        assert_chained_inputs(events)
        assert len(llm.requests()) - before == 1

    def test_a_three_step_llm_chain_leaves_only_clean_json_lines_in_every_log(
            self, stack: Stack, llm: FakeLlm, script: ComfyScript, photo: Path) -> None:
        beach = ("background", "Change the background to a beach at sunset, keep the person unchanged")
        dress = ("outfit", "Change her outfit to a red summer dress, keep her face and pose unchanged")
        towel = ("pose", "Change her pose: sitting on a towel, keep her face, outfit and the background unchanged")
        llm.queue(plan_json(towel, dress, beach))
        script.reset("same", "same", "same")

        run = stack.edit(photo, THREE_STEPS, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *GOOD_ATTEMPT * 3, COMPLETED]
        assert only(events, PLANNED)["planner"] == "llm"
        gateway = f"http://127.0.0.1:{stack.port}"
        assert httpx.get(f"{gateway}/chains/{run.chain_id}", timeout=10).status_code == 404  # not this caller's
        # The access line is written once the response is sent: a moment after the client has it.
        deadline = time.monotonic() + 10
        while '"route": "/chains/{chain_id}"' not in stack.log("gateway") and time.monotonic() < deadline:
            time.sleep(0.1)
        records = {service: json_lines(stack, service) for service in ("gateway", "chat", *CHAIN_SERVICES)}
        for service, lines in records.items():
            assert lines, f"{service} logged nothing"
            assert all(line["service"] == service for line in lines), service
            bad = [line for line in lines if line["level"] in ("ERROR", "CRITICAL") or "exception" in line
                   or "Traceback" in line["message"]]
            assert not bad, f"{service} logged errors in normal operation: {bad}"
        # The handlers' lines name the chain they worked on; the gateway logged the request, template and all.
        assert any(str(run.chain_id) in line.get("correlation_id", "") for line in records["planner"])
        access = [line["http"] for line in records["gateway"] if "http" in line]
        assert {"method": "GET", "route": "/chains/{chain_id}", "status": 404} in [
            {key: entry[key] for key in ("method", "route", "status")} for entry in access]
        assert all(set(entry) == {"method", "route", "status", "duration_ms", "user"} for entry in access)


def json_lines(stack: Stack, service: str) -> list[dict]:
    """Every line of a service's log, each of which must be one JSON object."""
    lines = []
    for number, line in enumerate(stack.log(service).splitlines(), 1):
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{service}.log line {number} is not JSON: {line!r}") from None
    return lines


# -- no ComfyUI to be had -----------------------------------------------------------------------


class TestUnreachable:
    @pytest.fixture(scope="class")
    @classmethod
    def down_url(cls) -> str:
        return closed_url()

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, workdir: Path, down_url: str) -> Iterator[Stack]:
        yield from started(Stack(workdir / "unreachable", services=CHAIN_SERVICES, env={
            "LIKENESS_COMFYUI_URLS": down_url,
            "LIKENESS_CONNECT_TIMEOUT_S": "1", "LIKENESS_REQUEST_TIMEOUT_S": "2", "LIKENESS_RENDER_TIMEOUT_S": "10",
            "LIKENESS_HEALTH_TIMEOUT_S": "1",
            # Each attempt waits this long for the backend to come back before it counts as unreachable.
            "LIKENESS_RENDER_BACKEND_WAIT_S": "1",
        }))

    def test_an_unreachable_comfyui_fails_the_chain_after_its_retries(self, stack: Stack, down_url: str,
                                                                      photo: Path) -> None:
        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 1)
        unreachable = [STEP_REQUESTED, STEP_FAILED, RETRIED]
        assert types(events) == [REQUESTED, PLANNED, *unreachable * 3, STEP_REQUESTED, STEP_FAILED, FAILED]
        step_failures = of_type(events, STEP_FAILED)
        assert [(f["attempt"], f["stage"]) for f in step_failures] == [(i, "render") for i in range(1, 5)]
        for f in step_failures:
            assert f["reason"].startswith("render unreachable: ") and down_url in f["reason"], f["reason"]
        seeds = [r["seed"] for r in of_type(events, STEP_REQUESTED)]
        assert len(set(seeds)) == 1  # nothing was rendered: the same seed each time
        assert [r["previous_score"] for r in of_type(events, RETRIED)] == [None] * 3
        failed = only(events, FAILED)
        assert "unreachable" in failed["reason"] and down_url in failed["reason"]
        assert [(a["attempt"], a["seed"], a["score"]) for a in failed["attempts"]] == [
            (i + 1, seeds[i], None) for i in range(4)]
        assert f"FAILED at step 1: {failed['reason']}" in run.stdout


# -- remote engines: the image edit API and RunPod serverless, before ComfyUI --------------------------


class TestRemoteEngines:
    """The photoreal style is routed to the cloud first; an engine that answers 5xx hands the job on."""

    @pytest.fixture(scope="class")
    @classmethod
    def image_api(cls, workdir: Path) -> Iterator[FakeCloud]:
        with FakeCloud(workdir, "image-api") as fake:
            yield fake

    @pytest.fixture(scope="class")
    @classmethod
    def runpod(cls, workdir: Path) -> Iterator[FakeCloud]:
        with FakeCloud(workdir, "runpod") as fake:
            yield fake

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, workdir: Path, comfy: FakeComfy, image_api: FakeCloud, runpod: FakeCloud) -> Iterator[Stack]:
        yield from started(Stack(workdir / "remote", services=CHAIN_SERVICES, env={
            "LIKENESS_COMFYUI_URLS": comfy.url,
            "LIKENESS_IMAGE_API_URL": image_api.url, "LIKENESS_IMAGE_API_KEY": "img-key",
            "LIKENESS_RUNPOD_URL": runpod.url, "LIKENESS_RUNPOD_API_KEY": "rp-key",
            "LIKENESS_RENDER_ROUTES": json.dumps({"style:photoreal": ["openai-images", "runpod", "comfyui"]}),
        }))

    def test_a_chain_renders_on_the_image_edit_api_with_its_cost(self, stack: Stack, image_api: FakeCloud,
                                                                  photo: Path) -> None:
        before = len(image_api.received("requests"))
        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *GOOD_ATTEMPT, COMPLETED]
        rendered = only(events, RENDERED)
        assert (rendered["engine"], rendered["backend"]) == ("openai-images", image_api.url)
        assert rendered["cost_usd"] > 0 and rendered["timings"]["total"] > 0
        (sent,) = image_api.received("requests")[before:]
        assert "beach at sunset" in sent["fields"]["prompt"]

    def test_a_5xx_from_the_image_api_hands_the_chain_to_runpod(self, stack: Stack, image_api: FakeCloud,
                                                                 runpod: FakeCloud, photo: Path) -> None:
        httpx.post(f"{image_api.control}/_fake/replies", json=[{"error": {"status": 503, "message": "overloaded"}}],
                   timeout=10).raise_for_status()
        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *GOOD_ATTEMPT, COMPLETED]
        rendered = only(events, RENDERED)
        assert (rendered["engine"], rendered["backend"]) == ("runpod", runpod.url)
        job = runpod.received("runs")[-1]
        assert job["http_status"] == 200 and job["authorization"] == "Bearer rp-key"

    def test_with_both_clouds_failing_comfyui_renders_it_with_the_same_seed(
            self, stack: Stack, image_api: FakeCloud, runpod: FakeCloud, comfy: FakeComfy, script: ComfyScript,
            photo: Path) -> None:
        httpx.post(f"{image_api.control}/_fake/replies", json=[{"error": {"status": 500, "message": "boom"}}],
                   timeout=10).raise_for_status()
        httpx.post(f"{runpod.control}/_fake/jobs", json=[{"run_http": 500}], timeout=10).raise_for_status()
        script.reset("same")
        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *GOOD_ATTEMPT, COMPLETED]
        rendered = only(events, RENDERED)
        assert (rendered["engine"], rendered["backend"]) == ("comfyui", comfy.url)
        assert script.served() == [{"outcome": "same", "seed": only(events, STEP_REQUESTED)["seed"]}]


class TestLlmPlannerOnLlamaCppPython:
    """The planner against a server that answers json_schema with HTTP 500 (llama-cpp-python) and takes longer
    to answer than the planner's ack wait (3.5x, as a 60 s model is 2x the default 30 s)."""

    ACK_WAIT_S = 2.0
    MODEL_DELAY_S = 7.0

    @pytest.fixture(scope="class")
    @classmethod
    def llm(cls, workdir: Path) -> Iterator[FakeLlm]:
        folder = workdir / "llama-cpp-python"
        folder.mkdir(exist_ok=True)
        # Its own folder: the process log of each fake server is named after the program.
        with FakeLlm(folder, mode="llama-cpp-python", first_token_delay_s=cls.MODEL_DELAY_S) as fake:
            yield fake

    @pytest.fixture(scope="class")
    @classmethod
    def stack(cls, workdir: Path, comfy: FakeComfy, llm: FakeLlm) -> Iterator[Stack]:
        yield from started(Stack(workdir / "llama", env={
            "LIKENESS_COMFYUI_URLS": comfy.url, "LIKENESS_ACK_WAIT_S": str(cls.ACK_WAIT_S),
            "LIKENESS_LLM_BASE_URL": llm.url, "LIKENESS_LLM_MODEL": "fake-model", "LIKENESS_LLM_TIMEOUT_S": "20",
        }))

    def test_a_slow_server_without_json_schema_plans_through_json_object_with_no_extra_call(
            self, stack: Stack, llm: FakeLlm, script: ComfyScript, photo: Path) -> None:
        beach = ("background", "Change the background to a beach at sunset, keep the person unchanged")
        llm.queue(plan_json(beach))
        before = len(llm.requests())

        run = stack.edit(photo, ONE_STEP, timeout_s=CHAIN_TIMEOUT_S + 2 * self.MODEL_DELAY_S)

        events = finished(stack, run, 0)
        assert types(events) == [REQUESTED, PLANNED, *GOOD_ATTEMPT, COMPLETED]
        planned = only(events, PLANNED)
        assert planned["planner"] == "llm" and planned["planner_note"] is None, planned
        asked = llm.requests()[before:]
        # One 500 for json_schema (its traceback stays out of the log's events), then one json_object call:
        # the request was held in progress through 7 s of a 2 s ack wait and never delivered again.
        assert [r["response_format"]["type"] for r in asked] == ["json_schema", "json_object"]
        # The one answer is paid for (the refused call is not): estimated, as the server sent no usage.
        usage = planned["llm_usage"]
        assert usage["model"] == "fake-model" and usage["calls"] == 1 and usage["tokens_estimated"], usage
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0

