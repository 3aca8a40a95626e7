"""Every call the clients make, as data: the endpoint (method and OpenAPI path), the request, how to read the
answer. `Client` and `AsyncClient` only send them; the tests check `ENDPOINTS` against /openapi.json."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from likeness_client.models import Accepted, Batch, BatchAccepted, Job, LikenessError, Model, Picture

__all__ = ["BATCH", "BATCH_STATUS", "ENDPOINTS", "EVENTS", "GENERATE", "GRID", "IMAGE", "JOB", "MODELS", "NICK_HEADER",
           "WAIT", "Call", "Endpoint", "error_of", "picture_path"]

NICK_HEADER = "X-Likeness-Nick"
# The gateway holds one /wait at most this long (LIKENESS_GATEWAY_WAIT_MAX_S by default); longer waits loop.
WAIT_SLICE_S = 600.0


@dataclass(frozen=True)
class Endpoint:
    """One operation of the gateway the clients use: what they send in a JSON body and the type they read."""

    method: str
    path: str
    sends: tuple[str, ...] = ()
    answers: type | None = None
    # Fields read from an answer that has no type of its own here.
    reads: tuple[str, ...] = ()


GENERATE = Endpoint("POST", "/request", ("message", "nick"), Accepted)
JOB = Endpoint("GET", "/job/{job_id}", answers=Job)
IMAGE = Endpoint("GET", "/job/{job_id}/image")
WAIT = Endpoint("GET", "/wait/{job_id}", reads=("done",))
BATCH = Endpoint("POST", "/batch", ("requests", "character", "nick"), BatchAccepted)
BATCH_STATUS = Endpoint("GET", "/batch/{batch_id}", answers=Batch)
GRID = Endpoint("GET", "/batches/{batch_id}/grid")
EVENTS = Endpoint("GET", "/chains/{chain_id}/events")
MODELS = Endpoint("GET", "/models", answers=Model)
ENDPOINTS = (GENERATE, JOB, IMAGE, WAIT, BATCH, BATCH_STATUS, GRID, EVENTS, MODELS)


@dataclass(frozen=True)
class Call:
    """One request, ready to send, and how its answer becomes a value."""

    method: str
    url: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    read: Callable[[Any], Any] = lambda body: body
    timeout_s: float | None = None

    @classmethod
    def to(cls, endpoint: Endpoint, *, nick: str | None = None, **path: str) -> Call:
        headers = {NICK_HEADER: nick} if nick is not None else {}
        read = _reader(endpoint.answers)
        return cls(endpoint.method, endpoint.path.format(**path), headers=headers, read=read)


def generate(message: str, nick: str | None) -> Call:
    return Call(GENERATE.method, GENERATE.path, json=_body(message=message, nick=nick), read=Accepted.from_json)


def job(job_id: str, nick: str | None) -> Call:
    return Call.to(JOB, nick=nick, job_id=job_id)


def wait(job_id: str, nick: str | None, seconds: float) -> Call:
    seconds = max(0.1, min(seconds, WAIT_SLICE_S))
    call = Call.to(WAIT, nick=nick, job_id=job_id)
    return Call(call.method, call.url, params={"timeout": seconds}, headers=call.headers,
                read=lambda body: bool(body["done"]), timeout_s=seconds + 30)


def batch(requests: Sequence[str], character: str | None, nick: str | None) -> Call:
    return Call(BATCH.method, BATCH.path, json=_body(requests=list(requests), character=character, nick=nick),
                read=BatchAccepted.from_json)


def batch_status(batch_id: str, nick: str | None) -> Call:
    return Call.to(BATCH_STATUS, nick=nick, batch_id=batch_id)


def models() -> Call:
    return Call(MODELS.method, MODELS.path, read=lambda body: [Model.from_json(m) for m in body])


def picture_path(what: Job | Picture | str) -> str:
    """Where the picture of `what` is: a job's result (its picture, or a batch's grid), a picture, a job id."""
    if isinstance(what, Job):
        if what.result is None:
            raise ValueError(f"job {what.job_id} has no picture: it is {what.status}"
                             + (f" ({what.error})" if what.error else ""))
        return what.result.url
    if isinstance(what, Picture):
        return what.url
    return IMAGE.path.format(job_id=what)


def error_of(status: int, body: Any, retry_after: str | None) -> LikenessError:
    """The gateway's error answer (`{"error", "detail"}`) as an exception."""
    if isinstance(body, dict) and "error" in body:
        code, detail = str(body["error"]), str(body.get("detail", ""))
    else:
        code, detail = "http_error", f"HTTP {status}"
    try:
        wait_s = float(retry_after) if retry_after is not None else None
    except ValueError:
        wait_s = None
    return LikenessError(status, code, detail, wait_s)


def _reader(answers: type | None) -> Callable[[Any], Any]:
    if answers is None:
        return lambda body: body
    return answers.from_json  # type: ignore[attr-defined]


def _body(**values: Any) -> dict[str, Any]:
    # Fields left out are the server's defaults (a nick of None: the key's own user).
    return {key: value for key, value in values.items() if value is not None}
