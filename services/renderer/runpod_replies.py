"""What RunPod's serverless API and worker-comfyui answer, read into plain values (pure: no I/O, no clock).

Where the facts come from (read in the sources, not copied):
* RunPod docs (github runpod/docs, serverless/endpoints/send-requests.mdx, operation-reference.mdx):
  base `https://api.runpod.ai/v2/<endpoint id>`; /run answers `{id, status: IN_QUEUE}`; /status gives
  `status`, `output`, `delayTime` and `executionTime` in ms; /cancel answers `{id, status: CANCELLED}`; a /run
  body is at most 10 MB; results are kept 30 min; a job's `policy.executionTimeout` (ms, above 5000) caps
  its run; HTTP 400, 401, 404, 429 (queue too long) and 500 happen. Retry-After on 429 is not documented.
* RunPod docs, job-states.mdx: IN_QUEUE, IN_PROGRESS, RUNNING, COMPLETED, FAILED, CANCELLED, TIMED_OUT.
* runpod-python 1.12.0: `Authorization: Bearer <key>` (endpoint/runner.py); a handler's `error` key becomes the
  job's `error` and the rest its `output`; a raised exception becomes an `error` JSON string with
  `error_message` (serverless/modules/rp_job.py).
* worker-comfyui 5.8.5 (README.md, handler.py): input `{workflow, images: [{name, image: base64}]}`, each image
  uploaded to ComfyUI's input folder by `name` (no subfolder); output `{images: [{filename, type: base64 |
  s3_url, data}], errors?}`, failures `{error, details?}`; before 5.0.0 (tag 3.6.0, src/rp_handler.py) the
  output was `{status: success | error, message: base64 or URL}`.
* RFC 9110 §10.2.3: Retry-After is delta-seconds or an HTTP date.
* Assumed, not documented: that 429 may carry Retry-After; that a FAILED job's /status keeps the handler's
  other keys (`details`) in `output`; that 404 on /status means the job is gone for good; that S3 URLs are
  presigned (fetched without our key).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from services.renderer.errors import BackendUnreachable, RenderError

__all__ = ["MAX_POLL_S", "RUNNING", "TERMINAL", "JobState", "OutputFile", "failure", "job_id_of", "next_poll_in",
           "output_prefix", "poll_refusal", "read_output", "retry_after_s", "run_refusal", "worker_error"]

RUNNING = frozenset({"IN_PROGRESS", "RUNNING"})  # RunPod's job-states page names both
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
MAX_POLL_S = 5.0
_REASON_MAX = 2000


@dataclass(frozen=True)
class JobState:
    """One /status answer."""

    status: str
    delay_ms: float | None = None
    execution_ms: float | None = None
    output: Any = None
    error: Any = None

    @classmethod
    def parse(cls, body: Any) -> JobState:
        """Read a /status body; ValueError if it is not one."""
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise ValueError(f"not a job status: {str(body)[:200]}")
        return cls(body["status"], _ms(body.get("delayTime")), _ms(body.get("executionTime")), body.get("output"),
                   body.get("error"))


@dataclass(frozen=True)
class OutputFile:
    """The output image: its bytes inline, or a URL to fetch them from (S3 upload configured)."""

    filename: str | None
    data: bytes | None = None
    url: str | None = None


def job_id_of(body: Any) -> str | None:
    """The job id of a /run answer, if it has one."""
    job_id = body.get("id") if isinstance(body, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None


def run_refusal(code: int, text: str, endpoint: str) -> RenderError:
    """The error for a /run answered with HTTP `code`: a bad request is the job's fault, the rest the endpoint's."""
    if code in (400, 413):
        return RenderError("validation", f"RunPod refused the job (HTTP {code}): {text}")
    if code in (401, 403):
        return BackendUnreachable(f"RunPod refused the API key for {endpoint} (HTTP {code})")
    if code == 404:
        return BackendUnreachable(f"RunPod has no endpoint at {endpoint} (HTTP 404); check the endpoint id")
    return BackendUnreachable(f"RunPod answered POST /run with HTTP {code}: {text}")


def poll_refusal(code: int, text: str, job_id: str) -> RenderError | None:
    """The error for a /status answered with HTTP `code`; None when the next poll may fare better (429, 5xx)."""
    if code == 429 or code >= 500:
        return None
    if code == 404:  # unknown, or its result expired (RunPod keeps results 30 minutes)
        return RenderError("interrupted", f"RunPod no longer knows job {job_id} (HTTP 404)")
    if code in (401, 403):
        return RenderError("unreachable", f"RunPod refused the API key while following job {job_id} (HTTP {code})")
    return RenderError("internal", f"RunPod answered the status of job {job_id} with HTTP {code}: {text}")


def failure(state: JobState, job_id: str) -> RenderError:
    """The error for a job that ended without an image (FAILED, TIMED_OUT, CANCELLED)."""
    if state.status == "FAILED":
        return RenderError("execution", worker_error(state.error, state.output) or f"RunPod job {job_id} failed")
    if state.status == "TIMED_OUT":
        # Either it expired in the queue or the worker overran the execution timeout: RunPod does not say which.
        ran = f" after {state.execution_ms / 1000:.1f} s of execution" if state.execution_ms else ""
        return RenderError("timeout", f"RunPod timed job {job_id} out{ran}")
    return RenderError("interrupted", f"RunPod job {job_id} was cancelled before it finished")


def worker_error(error: Any, output: Any) -> str:
    """The worker's error as one line, with the details worker-comfyui lists in `output.details`."""
    if isinstance(error, str):
        try:  # runpod-python reports a handler exception as a JSON string of error_type/error_message/traceback
            decoded = json.loads(error)
        except ValueError:
            decoded = None
        error = decoded if isinstance(decoded, dict) else error
    if isinstance(error, dict):
        error = error.get("error_message") or error.get("message") or json.dumps(error)
    parts = [str(error)] if error else []
    details = output.get("details") if isinstance(output, dict) else None
    if isinstance(details, list):
        parts.extend(str(d) for d in details)
    return _one_line("; ".join(parts))


def output_prefix(graph: dict[str, Any], output_node: str) -> str | None:
    """The file name stem ComfyUI gives the output node's images (`filename_prefix` without its folders)."""
    prefix = graph.get(output_node, {}).get("inputs", {}).get("filename_prefix")
    return prefix.rsplit("/", 1)[-1] if isinstance(prefix, str) and prefix else None


def read_output(output: Any, prefix: str | None) -> OutputFile:
    """The output image of a COMPLETED worker-comfyui job (5.x `images` list, or <5 `message`)."""
    if isinstance(output, dict) and isinstance(output.get("images"), list):
        files = [f for item in output["images"] if (f := _file(item)) is not None]
        if not files:
            warnings = output.get("errors") if isinstance(output.get("errors"), list) else []
            raise RenderError("execution", _one_line("; ".join(["the workflow produced no image", *map(str, warnings)])))
        # Other SaveImage nodes may add images; ours is the one named after the output node's prefix.
        ours = [f for f in files if prefix and (f.filename or "").startswith(f"{prefix}_")]
        return (ours or files)[0]
    if isinstance(output, dict) and isinstance(output.get("message"), str):
        if output.get("status") != "success":
            raise RenderError("execution", _one_line(output["message"]) or "the worker reported an error")
        return _file({"type": "url" if _is_url(output["message"]) else "base64", "data": output["message"]}) \
            or _unreadable(output)
    return _unreadable(output)


def next_poll_in(interval_s: float) -> float:
    """The pause before the next /status poll: half as long again each time, at most MAX_POLL_S."""
    return min(MAX_POLL_S, interval_s * 1.5)


def retry_after_s(header: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(header) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def _file(item: Any) -> OutputFile | None:
    if not isinstance(item, dict) or not isinstance(item.get("data"), str):
        return None
    name = item.get("filename") if isinstance(item.get("filename"), str) else None
    if item.get("type") in ("s3_url", "url"):
        return OutputFile(name, url=item["data"]) if _is_url(item["data"]) else None
    if item.get("type") != "base64":
        return None
    data = item["data"].split(",", 1)[1] if item["data"].startswith("data:") else item["data"]
    try:
        return OutputFile(name, data=base64.b64decode("".join(data.split()), validate=True))
    except (binascii.Error, ValueError):
        raise RenderError("execution", f"the output image {name or '(unnamed)'} is not valid base64") from None


def _unreadable(output: Any) -> OutputFile:
    keys = sorted(output) if isinstance(output, dict) else type(output).__name__
    raise RenderError("execution", f"cannot read an image from the job's output ({keys})")


def _is_url(text: str) -> bool:
    return text.startswith(("https://", "http://"))


def _ms(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _REASON_MAX else line[:_REASON_MAX - 1] + "…"
