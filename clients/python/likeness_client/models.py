"""What the bot API answers, as typed objects (read from the gateway's JSON; unknown fields are ignored)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

__all__ = [
    "Accepted",
    "Batch",
    "BatchAccepted",
    "BatchJob",
    "BatchMember",
    "Job",
    "LikenessError",
    "Model",
    "Picture",
    "Result",
]

_T = TypeVar("_T")


def _pick(cls: type[_T], raw: dict[str, Any], **nested: Any) -> _T:
    """`cls` from the JSON object `raw`: its own fields only, `nested` ones already built."""
    own = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{**{k: v for k, v in raw.items() if k in own}, **nested})


class LikenessError(Exception):
    """An error the gateway answered: `status`, a stable `code`, the `detail` for people, and `retry_after`
    (seconds) when it says to come back later."""

    def __init__(self, status: int, code: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after


@dataclass(frozen=True)
class Accepted:
    """POST /request: the job, at once."""

    job_id: str
    queue_position: int | None
    status: str
    nick: str | None
    character_id: str | None
    status_url: str
    wait_url: str
    events_url: str

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Accepted:
        return _pick(cls, raw)


@dataclass(frozen=True)
class Picture:
    """A picture a job made; `url` is fetched with the bot's key (`download`)."""

    job_id: str
    sha256: str
    media_type: str
    width: int
    height: int
    bytes: int
    url: str

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Picture:
        return _pick(cls, raw)


@dataclass(frozen=True)
class Result(Picture):
    """What a completed job made: its picture, or for a batch the grid (`grid`), and every picture."""

    grid: bool = False
    pictures: tuple[Picture, ...] = ()

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Result:
        return _pick(cls, raw, pictures=tuple(Picture.from_json(p) for p in raw.get("pictures", ())))


@dataclass(frozen=True)
class Job:
    """GET /job/{id}: queued, processing, completed (with `result`) or failed (with `error`)."""

    job_id: str
    nick: str | None
    status: str
    result: Result | None
    error: str | None
    character_id: str | None
    request: str | None
    batch_id: str | None

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed")

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Job:
        result = raw.get("result")
        return _pick(cls, raw, result=None if result is None else Result.from_json(result))


@dataclass(frozen=True)
class BatchJob:
    job_id: str
    request: str
    queue_position: int | None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BatchJob:
        return _pick(cls, raw)


@dataclass(frozen=True)
class BatchAccepted:
    """POST /batch: the batch (its id is its first job's) and one job per request."""

    batch_id: str
    queue_position: int | None
    status: str
    nick: str | None
    character_id: str | None
    jobs: tuple[BatchJob, ...]
    batch_url: str
    wait_url: str

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BatchAccepted:
        return _pick(cls, raw, jobs=tuple(BatchJob.from_json(j) for j in raw["jobs"]))


@dataclass(frozen=True)
class BatchMember:
    index: int
    job_id: str | None
    status: str
    picture: Picture | None
    error: str | None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BatchMember:
        picture = raw.get("picture")
        return _pick(cls, raw, picture=None if picture is None else Picture.from_json(picture))


@dataclass(frozen=True)
class Batch:
    """GET /batch/{id}: each job's state and picture, and the grid once every job has ended."""

    batch_id: str
    nick: str | None
    status: str
    count: int | None
    jobs: tuple[BatchMember, ...]
    grid: Result | None
    error: str | None

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed")

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Batch:
        grid = raw.get("grid")
        return _pick(cls, raw, jobs=tuple(BatchMember.from_json(j) for j in raw["jobs"]),
                     grid=None if grid is None else Result.from_json(grid))


@dataclass(frozen=True)
class Model:
    """GET /models: a model a message may name with `--model`; `kind` "edit" (a character's chain) or "t2i"."""

    name: str
    kind: str
    description: str
    width: int
    height: int

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Model:
        return _pick(cls, raw)
