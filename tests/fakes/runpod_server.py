"""A fake RunPod serverless endpoint running worker-comfyui: real HTTP on a real socket, scripted jobs, recorded requests.

In tests: `with FakeRunPod([JobScript(queue_s=0.3, run_s=0.2), JobScript(outcome="failed")]) as runpod:` then
point an engine at `runpod.url` (`http://127.0.0.1:PORT/v2/<endpoint id>`) and read `runpod.runs`,
`runpod.cancels`, `runpod.outputs`. Each POST /run takes the next scripted job (then `default`). As a process
(end-to-end tests): `python -m tests.fakes.runpod_server --port 0 [--script script.json] [--api-key KEY]
[--endpoint-id ID]`, which prints `fake-runpod listening on <url>` once it accepts connections. A script is
{"jobs": [job, ...], "default": job}, a job JobScript's fields as JSON. `GET /_fake/runs` lists the /run
requests, `GET /_fake/cancels` the cancelled ids, `POST /_fake/jobs` (a JSON list of jobs) queues more.

Speaks POST /v2/<id>/run, GET /v2/<id>/status/<job>, POST /v2/<id>/cancel/<job> and GET /v2/<id>/health in
RunPod's shapes (sources in services/renderer/runpod_engine.py); a job's state follows the clock from its
script. Like worker-comfyui, it fails a job whose LoadImage names a file not sent in `images`; it makes the
output by inverting the colours of the uploaded input (or a plain picture for text-to-image). Guessed, not
documented: the bodies of 401/404 answers, and 413 for a body over 10 MB.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from PIL import Image, ImageOps
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.threaded_server import ThreadedServer, process_arguments, read_script

__all__ = ["FakeRunPod", "ImageFor", "JobScript", "RunRequest", "create_app", "invert_input"]

Outcome = Literal["completed", "failed", "timed_out", "cancelled"]
# How worker-comfyui hands the image back: 5.x inline or on S3, <5.0 in `message`, or broken.
OutputForm = Literal["v5", "s3", "legacy", "legacy_url", "no_images", "bad_base64", "extra_image"]
ImageFor = Callable[[dict[str, Any], dict[str, bytes]], bytes]
RUN_BODY_MAX_BYTES = 10_000_000


@dataclass(frozen=True)
class JobScript:
    """How one submitted job behaves. Times are seconds from acceptance; `status_http` answers the first polls."""

    queue_s: float = 0.0
    run_s: float = 0.0
    outcome: Outcome = "completed"
    error: str = "Workflow execution error: Node Type: KSampler, Node ID: 8, Message: CUDA out of memory"
    details: tuple[str, ...] = ()  # worker-comfyui's `details`, left in `output` next to the error
    crash: bool = False  # the handler raised: runpod-python's JSON error string instead of the text
    output: OutputForm = "v5"
    run_http: int | None = None  # answer POST /run with this status (429, 500, 503) and queue nothing
    retry_after: str | None = None  # Retry-After header on scripted 429s
    status_http: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> JobScript:
        known = {f.name for f in fields(cls)}
        if unknown := set(value) - known:
            raise ValueError(f"unknown job script keys {sorted(unknown)}; known: {sorted(known)}")
        tuples = {k: tuple(value[k]) for k in ("details", "status_http") if k in value}
        return cls(**{**value, **tuples})


@dataclass
class RunRequest:
    """One POST /run as received: what the worker would get, and what the fake answered."""

    http_status: int
    job_id: str | None
    workflow: dict[str, Any] | None
    images: dict[str, bytes]
    policy: dict[str, Any] | None
    authorization: str | None


@dataclass
class _Job:
    id: str
    script: JobScript
    accepted: float
    limit_s: float  # policy.executionTimeout, or RunPod's default of 10 minutes
    problem: str | None  # what worker-comfyui would refuse the input for
    output: dict[str, Any] | None = None
    cancelled_at: float | None = None
    status_http: deque[int] = field(default_factory=deque)


def keep_input(workflow: dict[str, Any], images: dict[str, bytes]) -> bytes:
    """The LoadImage's picture unchanged, as PNG: a face the face check still knows, for end-to-end chains."""
    names = [n["inputs"].get("image") for n in workflow.values() if n.get("class_type") == "LoadImage"]
    source = next((images[name] for name in names if name in images), None)
    if source is None:
        return invert_input(workflow, images)
    with Image.open(io.BytesIO(source)) as opened:
        out = io.BytesIO()
        opened.convert("RGB").save(out, format="PNG")
    return out.getvalue()


def invert_input(workflow: dict[str, Any], images: dict[str, bytes]) -> bytes:
    """The default render: the LoadImage's picture with inverted colours, as PNG (64x64 grey without one)."""
    names = [n["inputs"].get("image") for n in workflow.values() if n.get("class_type") == "LoadImage"]
    source = next((images[name] for name in names if name in images), None)
    picture = Image.new("RGB", (64, 64), (128, 128, 128))
    if source is not None:
        with Image.open(io.BytesIO(source)) as opened:
            picture = ImageOps.invert(opened.convert("RGB"))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


class FakeRunPod(ThreadedServer):
    """The fake endpoint, run in a thread as a context manager."""

    name = "fake-runpod"

    def __init__(self, jobs: Iterable[JobScript] = (), *, default: JobScript | None = None,
                 api_key: str | None = "fake-key", endpoint_id: str = "fake-endpoint",
                 image_for: ImageFor = invert_input, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.scripts: deque[JobScript] = deque(jobs)
        self.default = default or JobScript()
        self.api_key, self.endpoint_id, self.image_for = api_key, endpoint_id, image_for
        self.jobs: dict[str, _Job] = {}
        self.cancels: list[str] = []
        self.outputs: dict[str, bytes] = {}
        self.polls: dict[str, int] = {}

    @property
    def url(self) -> str:
        """The endpoint's base URL, as `https://api.runpod.ai/v2/<endpoint id>` is for the real one."""
        return f"{self.base}/v2/{self.endpoint_id}"

    @property
    def runs(self) -> list[RunRequest]:
        """The POST /run requests received so far."""
        return self.requests

    def app(self) -> Starlette:
        return create_app(self)

    def push(self, *jobs: JobScript) -> None:
        with self.lock:
            self.scripts.extend(jobs)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's /status body now."""
        with self.lock:
            return self._status(self.jobs[job_id], time.monotonic())

    def accept(self, body: dict[str, Any], authorization: str | None) -> tuple[int, dict[str, Any], JobScript]:
        """Record a /run request and queue its job unless the script refuses it: (HTTP status, body, script)."""
        with self.lock:
            script = self.scripts.popleft() if self.scripts else self.default
        job_input = body.get("input") if isinstance(body.get("input"), dict) else {}
        workflow = job_input.get("workflow") if isinstance(job_input.get("workflow"), dict) else None
        images, problem = _decode_images(job_input.get("images"))
        problem = problem or _check_workflow(workflow, images)
        policy = body.get("policy") if isinstance(body.get("policy"), dict) else None
        job_id = None if script.run_http else f"{uuid.uuid4()}-u1"
        record = RunRequest(script.run_http or 200, job_id, workflow, images, policy, authorization)
        self.log(record)
        if script.run_http:
            return script.run_http, {"error": f"fake runpod: scripted HTTP {script.run_http}"}, script
        assert job_id is not None
        limit_ms = (policy or {}).get("executionTimeout", 600_000)
        job = _Job(job_id, script, time.monotonic(), float(limit_ms) / 1000, problem,
                   status_http=deque(script.status_http))
        if problem is None and workflow is not None:
            try:
                image = self.image_for(workflow, images)
            except Exception as exc:  # noqa: BLE001 - the worker reports a node's exception as an execution error
                job.problem = f"Workflow execution error: Node Type: LoadImage, Message: {exc}"
            else:
                job.output = self._output(job_id, script.output, image, _prefix(workflow))
                with self.lock:
                    self.outputs[job_id] = image
        with self.lock:
            self.jobs[job_id] = job
        return 200, {"id": job_id, "status": "IN_QUEUE"}, script

    def _output(self, job_id: str, form: OutputForm, image: bytes, prefix: str) -> dict[str, Any]:
        name = f"{prefix}_00001_.png"
        inline, url = base64.b64encode(image).decode(), f"{self.base}/_fake/bucket/{job_id}/{name}?X-Amz-Signature=f"
        match form:
            case "v5":
                return {"images": [{"filename": name, "type": "base64", "data": inline}]}
            case "s3":
                return {"images": [{"filename": name, "type": "s3_url", "data": url}]}
            case "legacy":
                return {"status": "success", "message": inline}
            case "legacy_url":
                return {"status": "success", "message": url}
            case "no_images":
                return {"status": "success_no_images", "images": []}
            case "bad_base64":
                return {"images": [{"filename": name, "type": "base64", "data": "@@ not base64 @@"}]}
            case "extra_image":
                other = invert_input({}, {})
                return {"images": [{"filename": "ComfyUI_00001_.png", "type": "base64",
                                    "data": base64.b64encode(other).decode()},
                                   {"filename": name, "type": "base64", "data": inline}]}
        raise ValueError(form)

    def _status(self, job: _Job, now: float) -> dict[str, Any]:
        script, elapsed = job.script, now - job.accepted
        queue_s = script.queue_s
        run_s = 0.0 if job.problem else min(script.run_s, job.limit_s)
        end = queue_s + run_s
        if job.cancelled_at is not None and job.cancelled_at - job.accepted < end:
            cut = job.cancelled_at - job.accepted
            return _body(job.id, "CANCELLED", min(cut, queue_s), max(0.0, cut - queue_s))
        if elapsed < queue_s:
            return {"id": job.id, "status": "IN_QUEUE"}
        if elapsed < end:
            return {**_body(job.id, "IN_PROGRESS", queue_s, None), "workerId": "fake-worker-1"}
        if job.problem is not None:
            return {**_body(job.id, "FAILED", queue_s, 0.0), "error": job.problem}
        if script.run_s > job.limit_s or script.outcome == "timed_out":
            return _body(job.id, "TIMED_OUT", queue_s, run_s)
        if script.outcome == "cancelled":
            return _body(job.id, "CANCELLED", queue_s, run_s)
        if script.outcome == "failed":
            failed = {**_body(job.id, "FAILED", queue_s, run_s), "error": _error_text(script)}
            return {**failed, "output": {"details": list(script.details)}} if script.details else failed
        return {**_body(job.id, "COMPLETED", queue_s, run_s), "output": job.output}


def _body(job_id: str, status: str, queue_s: float, run_s: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": job_id, "status": status, "delayTime": round(queue_s * 1000)}
    if run_s is not None:
        body["executionTime"] = round(run_s * 1000)
    return body


def _error_text(script: JobScript) -> str:
    if not script.crash:
        return script.error
    return json.dumps({"error_type": "<class 'RuntimeError'>", "error_message": script.error,
                       "error_traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: " + script.error,
                       "hostname": "fake-worker-1", "worker_id": "fake-worker-1", "runpod_version": "1.12.0"})


def _decode_images(images: Any) -> tuple[dict[str, bytes], str | None]:
    """worker-comfyui's check and upload of `input.images` (a data URI prefix is allowed)."""
    if images is None:
        return {}, None
    if not isinstance(images, list) or not all(isinstance(i, dict) and "name" in i and "image" in i for i in images):
        return {}, "'images' must be a list of objects with 'name' and 'image' keys"
    decoded: dict[str, bytes] = {}
    for image in images:
        data = str(image["image"]).split(",", 1)[-1]
        try:
            decoded[str(image["name"])] = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return decoded, f"Failed to upload one or more input images: cannot decode {image['name']}"
    return decoded, None


def _check_workflow(workflow: dict[str, Any] | None, images: dict[str, bytes]) -> str | None:
    """ComfyUI's prompt validation of LoadImage, worded as worker-comfyui passes it on."""
    if workflow is None:
        return "Missing 'workflow' parameter"
    for node_id, node in workflow.items():
        name = (node.get("inputs") or {}).get("image") if isinstance(node, dict) else None
        if node.get("class_type") == "LoadImage" and name not in images:
            error = {"type": "custom_validation_failed", "message": "Custom validation failed for node",
                     "details": f"image - Invalid image file: {name}", "extra_info": {}}
            return (f"Workflow validation failed:\n• Node {node_id} (errors): [{error!r}]\n"
                    f"• Node {node_id} (class_type): LoadImage")
    return None


def _prefix(workflow: dict[str, Any]) -> str:
    for node in workflow.values():
        if isinstance(node, dict) and node.get("class_type") == "SaveImage":
            prefix = str((node.get("inputs") or {}).get("filename_prefix") or "ComfyUI")
            return prefix.rsplit("/", 1)[-1]
    return "ComfyUI"


def create_app(fake: FakeRunPod) -> Starlette:
    """The fake's HTTP app."""

    def refused(request: Request) -> Response | None:
        if request.path_params["endpoint"] != fake.endpoint_id:
            return JSONResponse({"error": "endpoint not found"}, 404)
        given = request.headers.get("authorization")
        # RunPod's own examples send the key both with and without "Bearer ".
        if fake.api_key is not None and given not in (fake.api_key, f"Bearer {fake.api_key}"):
            return JSONResponse({"error": "Unauthorized"}, 401)
        return None

    def job_of(request: Request) -> _Job | Response:
        with fake.lock:
            job = fake.jobs.get(request.path_params["job"])
        return job if job is not None else JSONResponse({"error": "request does not exist"}, 404)

    async def run(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        raw = await request.body()
        if len(raw) > RUN_BODY_MAX_BYTES:
            return JSONResponse({"error": "request entity too large"}, 413)
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": "invalid JSON body"}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return JSONResponse({"error": "an object with 'input' is required"}, 400)
        code, answer, script = fake.accept(body, request.headers.get("authorization"))
        headers = {"Retry-After": script.retry_after} if code == 429 and script.retry_after else None
        return JSONResponse(answer, code, headers=headers)

    async def status(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        if isinstance(job := job_of(request), Response):
            return job
        with fake.lock:
            fake.polls[job.id] = fake.polls.get(job.id, 0) + 1
            code = job.status_http.popleft() if job.status_http else None
        if code is not None:
            headers = {"Retry-After": job.script.retry_after} if code == 429 and job.script.retry_after else None
            return JSONResponse({"error": f"fake runpod: scripted HTTP {code}"}, code, headers=headers)
        return JSONResponse(fake.status(job.id))

    async def cancel(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        if isinstance(job := job_of(request), Response):
            return job
        now = time.monotonic()
        with fake.lock:
            fake.cancels.append(job.id)
            if fake._status(job, now)["status"] in ("IN_QUEUE", "IN_PROGRESS"):
                job.cancelled_at = now
        return JSONResponse({"id": job.id, "status": fake.status(job.id)["status"]})

    async def health(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        now = time.monotonic()
        with fake.lock:
            states = [fake._status(job, now)["status"] for job in fake.jobs.values()]
        return JSONResponse({"jobs": {"completed": states.count("COMPLETED"), "failed": states.count("FAILED"),
                                      "inProgress": states.count("IN_PROGRESS"), "inQueue": states.count("IN_QUEUE"),
                                      "retried": 0},
                             "workers": {"idle": 1, "running": states.count("IN_PROGRESS")}})

    async def bucket(request: Request) -> Response:
        # A presigned S3 URL carries its auth in the query: S3 refuses a request with an Authorization header too.
        if request.headers.get("authorization"):
            return Response("<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed"
                            "</Message></Error>", 400, media_type="application/xml")
        with fake.lock:
            image = fake.outputs.get(request.path_params["job"])
        return Response(image, media_type="image/png") if image else Response(status_code=404)

    async def recorded_runs(request: Request) -> Response:
        runs = [{**asdict(r), "images": {n: len(b) for n, b in r.images.items()}} for r in fake.runs]
        return JSONResponse(runs)

    async def recorded_cancels(request: Request) -> Response:
        with fake.lock:
            return JSONResponse(list(fake.cancels))

    async def queue(request: Request) -> Response:
        fake.push(*(JobScript.from_json(value) for value in await request.json()))
        return JSONResponse({"queued": len(fake.scripts)})

    return Starlette(routes=[
        Route("/v2/{endpoint}/run", run, methods=["POST"]),
        Route("/v2/{endpoint}/status/{job}", status, methods=["GET"]),
        Route("/v2/{endpoint}/cancel/{job}", cancel, methods=["POST"]),
        Route("/v2/{endpoint}/health", health, methods=["GET"]),
        Route("/_fake/bucket/{job}/{name}", bucket, methods=["GET"]),
        Route("/_fake/runs", recorded_runs, methods=["GET"]),
        Route("/_fake/cancels", recorded_cancels, methods=["GET"]),
        Route("/_fake/jobs", queue, methods=["POST"]),
    ])


def main(argv: list[str] | None = None) -> None:
    """Run the fake as a process until SIGINT/SIGTERM."""
    parser = process_arguments("tests.fakes.runpod_server", __doc__, "JSON file: {\"jobs\": [...], \"default\": {...}}")
    parser.add_argument("--api-key", default="fake-key", help="require this key (default: fake-key)")
    parser.add_argument("--endpoint-id", default="fake-endpoint")
    parser.add_argument("--keep-input", action="store_true", help="render the input unchanged (not inverted)")
    args = parser.parse_args(argv)
    script = read_script(args.script)
    default = script.get("default")
    FakeRunPod([JobScript.from_json(job) for job in script.get("jobs", [])],
               default=None if default is None else JobScript.from_json(default), api_key=args.api_key,
               endpoint_id=args.endpoint_id, image_for=keep_input if args.keep_input else invert_input,
               host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
