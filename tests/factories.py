"""Small builders of messages and envelopes for tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import CharacterThresholdSet, Envelope, Message


def wrap(message: Message, stream: str, *, event_id: uuid.UUID | None = None, causation_id: str | None = None) -> Envelope:
    return Envelope.wrap(
        message,
        event_id=event_id or uuid.uuid4(),
        stream=stream,
        occurred_at=datetime.now(UTC),
        correlation_id=stream,
        causation_id=causation_id,
        actor="tests",
    )


def new_stream(prefix: str = "character") -> str:
    return f"{prefix}-t{uuid.uuid4().hex[:16]}"


def threshold_event(stream: str, threshold: float = 40.0, **kw) -> Envelope:
    """A real contract event that is cheap to build: a character's threshold changed."""
    character_id = stream.removeprefix("character-")
    return wrap(CharacterThresholdSet(character_id=character_id, threshold=threshold), stream, **kw)
