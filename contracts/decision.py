"""What a pure `decide` returns: the events to append to its stream and the commands to send with them."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.base import Command, Event

__all__ = ["Decision"]


@dataclass(frozen=True)
class Decision:
    events: list[Event] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
