"""A chain's Server-Sent Events (GET /chains/{id}/events) as typed objects, and the decoder of the stream.

Every event of the chain's log comes as a `ChainEvent` (its `seq` resumes the stream); live only, never
replayed: `Progress` of a render, `Queue` (prompts ahead in ComfyUI's own queue), `Preview` frames and
`Waiting` (no render backend answers yet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ChainEvent", "Event", "EventDecoder", "Preview", "Progress", "Queue", "TERMINAL", "Waiting"]

# After one of these the chain's stream never grows again, and the server closes it.
TERMINAL = frozenset({"chain.completed", "chain.failed", "chain.refused", "chain.cancelled"})


@dataclass(frozen=True)
class ChainEvent:
    """A recorded event of the chain: `type` (e.g. "chain.step_accepted"), its `data`, its place `seq`."""

    seq: int
    type: str
    occurred_at: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL


@dataclass(frozen=True)
class Progress:
    step: int
    attempt: int
    value: int
    max: int
    queue_position: int | None = None


@dataclass(frozen=True)
class Queue:
    position: int
    step: int | None = None
    attempt: int | None = None


@dataclass(frozen=True)
class Preview:
    step: int
    attempt: int
    data_url: str


@dataclass(frozen=True)
class Waiting:
    step: int
    attempt: int
    waited_s: float
    limit_s: float


Event = ChainEvent | Progress | Queue | Preview | Waiting
_LIVE: dict[str, type] = {"progress": Progress, "queue": Queue, "preview": Preview, "waiting": Waiting}


class EventDecoder:
    """Turns the stream's lines, one at a time, into events (None until an event is complete)."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if line:
            if not line.startswith(":"):  # a comment: the server's heartbeat
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    self._id = value
                elif name == "event":
                    self._event = value
                elif name == "data":
                    self._data.append(value)
            return None
        event_id, kind, data = self._id, self._event, "\n".join(self._data)
        self._id, self._event, self._data = None, "message", []
        if not data:
            return None
        return _typed(event_id, kind, json.loads(data))


def _typed(event_id: str | None, kind: str, body: dict[str, Any]) -> Event | None:
    if event_id is not None:
        return ChainEvent(int(event_id), body.get("type", kind), body.get("occurred_at", ""), body.get("data", {}))
    live = _LIVE.get(kind)
    if live is None:
        return None  # a kind this client does not know yet: newer servers may send more
    own = {f.name for f in fields(live)}
    return live(**{k: v for k, v in body.items() if k in own})
