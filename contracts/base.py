"""Base classes of every message: frozen pydantic models with a `type` literal and a `version`.

A concrete message declares both as literals with defaults, e.g.

    class ChainRequested(Event):
        type: Literal["chain.requested"] = "chain.requested"
        version: Literal[1] = 1

`Event` is "this happened" (appended to a stream, or published by a stateless service),
`Command` is "do this" (consumed by exactly one service), `Ephemeral` is live-only traffic
(progress ticks, previews, token deltas) that rides core NATS and is never stored.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.fields import Attempt, StepIndex

__all__ = ["Command", "Ephemeral", "Event", "Message", "ImageRef", "StepAttempt"]


class Message(BaseModel):
    """Any typed, versioned message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    version: int

    # Which kind of subject the message travels on; set by the three kinds below.
    kind: ClassVar[str] = "message"

    def body(self) -> dict:
        """The JSON body without `type`/`version`, which the envelope carries once."""
        return self.model_dump(mode="json", exclude={"type", "version"})


class Event(Message):
    """Something that happened; a fact, never refused by its readers."""

    kind: ClassVar[str] = "event"


class Command(Message):
    """A request for one service to act; it may fail, and says so with an event."""

    kind: ClassVar[str] = "command"


class Ephemeral(Message):
    """Live traffic worth nothing later: never stored, never redelivered."""

    kind: ClassVar[str] = "ephemeral"


class ImageRef(BaseModel):
    """A pointer into the content-addressed blob store; images never ride the bus."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    media_type: str = Field(pattern=r"^image/(png|jpeg|webp)$")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    bytes: int = Field(gt=0)


class StepAttempt(BaseModel):
    """The fields of every message about one attempt of one step of a chain (commands, results, ticks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chain_id: UUID
    step: StepIndex
    attempt: Attempt
