"""Request bodies and response shapes of the public API (what /docs shows)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.fields import CharacterId

__all__ = [
    "BranchRequest",
    "ChainStarted",
    "Character",
    "ChatRequest",
    "GenerateImageRequest",
    "ImageLinks",
    "Job",
    "JobBatch",
    "JobProgress",
    "LoginRequest",
    "Me",
    "Persona",
    "PersonaUpdate",
    "SignedUp",
]

_REQUEST_MAX = 2000
# Text is stripped of surrounding white space first: it must hold something else.
_SOME_TEXT = r"\S"
# No plan has more steps than this (services.planner's schema allows 3, the bound leaves room).
_MAX_STEP = 15


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class GenerateImageRequest(_Body):
    character_id: CharacterId
    request: str = Field(min_length=1, max_length=_REQUEST_MAX, pattern=_SOME_TEXT,
                         description='What to show, e.g. "on a beach at sunset, in a red dress --seed 7"')
    conversation_id: UUID | None = None


class ChatRequest(_Body):
    character_id: CharacterId
    text: str = Field(min_length=1, max_length=8000, pattern=_SOME_TEXT)
    conversation_id: UUID | None = Field(default=None, description="omit to start a new conversation")


class PersonaUpdate(_Body):
    persona: str = Field(max_length=4000)
    personality: str | None = Field(default=None, max_length=200)
    occupation: str | None = Field(default=None, max_length=200)


class BranchRequest(_Body):
    from_step: int = Field(ge=0, le=_MAX_STEP,
                           description="the step of the parent chain whose accepted image the branch edits")
    request: str = Field(min_length=1, max_length=_REQUEST_MAX, pattern=_SOME_TEXT)


class LoginRequest(_Body):
    api_key: str = Field(min_length=8, max_length=200)


class ImageLinks(BaseModel):
    sha256: str
    media_type: str
    width: int
    height: int
    bytes: int
    url: str
    thumb_url: str
    download_url: str


class Character(BaseModel):
    id: str
    name: str
    gender: str
    personality: str
    occupation: str
    art_style: str
    builtin: bool
    has_reference: bool
    avatar_url: str
    reference: dict[str, Any] | None = None


class Persona(BaseModel):
    character_id: str
    name: str
    persona: str
    personality: str
    occupation: str
    builtin: bool
    editable: bool


class JobProgress(BaseModel):
    steps_total: int
    steps_done: int
    step: int | None
    attempt: int | None
    fraction: float


class JobBatch(BaseModel):
    batch_id: str
    count: int = Field(description="how many chains the batch holds")
    status: str = Field(description="running, or completed once every chain has ended")
    completed: list[str] = Field(description="the chains that made a picture, once the batch is completed")
    grid_url: str | None = Field(description="the grid of the pictures (GET /batches/{id}/grid), once there is one")
    url: str = Field(description="GET /batches/{id}: each chain's state and picture")


class Job(BaseModel):
    job_id: str
    chain_id: str
    status: str = Field(description="queued, running, completed, failed, refused or cancelled")
    done: bool
    character_id: str | None
    request_text: str | None
    progress: JobProgress
    score: float | None
    result: ImageLinks | None
    image_url: str | None
    reason: str | None
    version: int
    events_url: str
    chain_url: str
    batch: JobBatch | None = Field(default=None, description="the batch this job heads (`--count N`, POST /batch); "
                                                             "/wait ends when every chain of it has")


class ChainStarted(BaseModel):
    job_id: str
    chain_id: str
    status: str
    status_url: str
    wait_url: str
    events_url: str
    source_chain_id: str | None = None
    note: str | None = None


class SignedUp(BaseModel):
    user_id: str
    api_key: str = Field(description="shown this once: store it; only its hash is kept")
    kind: str


class Me(BaseModel):
    user_id: str
    kind: str
    images_used: int
    image_limit: int | None
    images_left: int | None
