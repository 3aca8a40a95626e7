"""What a decision produces: events to append to the stream, commands to send with them (outbox)."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts import Command, Event

__all__ = ["Decision"]


@dataclass(frozen=True)
class Decision:
    events: list[Event] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
