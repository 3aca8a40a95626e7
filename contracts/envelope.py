"""The envelope every message travels in, on the bus and in the log.

`event_id` is also the JetStream `Nats-Msg-Id`, so a republished message is dropped by the
server's de-duplication window; `stream`/`seq` place an event in its stream (commands and
stateless events have no `seq`). The body keeps the message fields; `type` and `version` are
carried once, here, so a reader can route and upcast before it validates.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.base import Message
from contracts.errors import MalformedMessage
from contracts.registry import MessageRegistry

__all__ = ["Envelope", "TraceContext"]


class TraceContext(BaseModel):
    """W3C trace context, passed along so one chain reads as one trace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    traceparent: str | None = None
    tracestate: str | None = None


class Envelope(BaseModel):
    """Routing, ordering and provenance around one message body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    stream: str
    seq: int | None = Field(default=None, ge=1)
    type: str
    version: int = Field(ge=1)
    occurred_at: datetime
    correlation_id: str
    causation_id: str | None = None
    actor: str | None = None
    trace: TraceContext = TraceContext()
    data: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        message: Message,
        *,
        event_id: UUID,
        stream: str,
        occurred_at: datetime,
        correlation_id: str,
        seq: int | None = None,
        causation_id: str | None = None,
        actor: str | None = None,
        trace: TraceContext | None = None,
    ) -> Envelope:
        """Put `message` in an envelope; ids and time are passed in, never made here."""
        return cls(
            event_id=event_id,
            stream=stream,
            seq=seq,
            type=message.type,
            version=message.version,
            occurred_at=occurred_at,
            correlation_id=correlation_id,
            causation_id=causation_id,
            actor=actor,
            trace=trace or TraceContext(),
            data=message.body(),
        )

    @classmethod
    def caused_by(cls, message: Message, cause: Envelope, *, event_id: UUID, stream: str,
                  occurred_at: datetime) -> Envelope:
        """`message` in an envelope caused by `cause`: its correlation, actor and trace carried over, and
        the cause named (`causation_id`)."""
        return cls.wrap(message, event_id=event_id, stream=stream, occurred_at=occurred_at,
                        correlation_id=cause.correlation_id, causation_id=str(cause.event_id), actor=cause.actor,
                        trace=cause.trace)

    def open(self, registry: MessageRegistry) -> Message:
        """The typed message inside, upcast to the current version."""
        return registry.parse(self.type, self.version, self.data)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Parse wire bytes; anything that is not an envelope is a `MalformedMessage`."""
        try:
            return cls.model_validate(json.loads(raw))
        # RecursionError: absurdly nested JSON must dead-letter like any other poison message.
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            reason = _summarise(exc) if isinstance(exc, ValidationError) else f"not JSON: {exc}"
            raise MalformedMessage(f"not a Likeness envelope: {reason}") from exc


def _summarise(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
