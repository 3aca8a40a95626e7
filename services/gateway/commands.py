"""Sending commands from the edge, and waiting for the event that answers one.

Commands go to JetStream (`Nats-Msg-Id` = the envelope's event id, so a retried publish is
stored once). The answer to a character command is the event of `character-<id>` whose envelope
names the command as its cause: the live hub usually brings it within milliseconds; the log is
checked as well every so often, so an answer whose live copy was missed is still found.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from contracts import Command, Envelope
from services.gateway.db import Database
from services.gateway.errors import Unavailable, UpstreamTimeout
from services.gateway.live import CLOSED, LiveHub
from services.runtime import tracing
from services.runtime.bus import Bus

__all__ = ["Commander"]

_LOG_CHECK_S = 1.0


class Commander:
    """Publishes commands on behalf of a user and waits for their answers."""

    def __init__(self, bus: Bus, hub: LiveHub, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self._bus, self._hub, self._db = bus, hub, db
        self._clock = clock or (lambda: datetime.now(UTC))

    def envelope(self, command: Command, *, stream: str, actor: str) -> Envelope:
        # The request's server span (when tracing is on) becomes the parent of everything the command causes.
        return Envelope.wrap(command, event_id=uuid.uuid4(), stream=stream, occurred_at=self._clock(),
                             correlation_id=stream, actor=actor, trace=tracing.trace_of_current_span())

    async def send(self, envelope: Envelope, command: Command) -> None:
        try:
            await self._bus.publish(envelope, command)
        except Exception as exc:  # NATS down or slow: say so in the gateway's words
            raise Unavailable(f"the message bus did not take the request ({type(exc).__name__}); try again",
                              code="bus_unavailable") from exc

    async def send_and_wait(self, command: Command, *, stream: str, actor: str, timeout_s: float,
                            service: str = "chat") -> Envelope:
        """Publish `command` (about `stream`) and return the event of `stream` it caused."""
        envelope = self.envelope(command, stream=stream, actor=actor)
        cause = str(envelope.event_id)
        deadline = time.monotonic() + timeout_s
        with self._hub.listen(stream) as listener:
            await self.send(envelope, command)
            next_check = time.monotonic() + _LOG_CHECK_S
            while (left := deadline - time.monotonic()) > 0:
                wait = max(0.0, min(left, next_check - time.monotonic()))
                item = await listener.next(wait)
                if item is CLOSED:
                    raise Unavailable("the gateway is shutting down; send the request again", code="shutting_down")
                if item is not None and item.persisted and item.envelope.get("causation_id") == cause:
                    return Envelope.model_validate(item.envelope)
                if listener.lost or time.monotonic() >= next_check:
                    listener.lost = False
                    next_check = time.monotonic() + _LOG_CHECK_S
                    found = await self._answer_in_log(stream, cause)
                    if found is not None:
                        return found
            found = await self._answer_in_log(stream, cause)
            if found is not None:
                return found
        raise UpstreamTimeout(f"the {service} service did not answer within {timeout_s:g}s; it may be down or busy. "
                              "Try again in a moment", code=f"{service}_timeout")

    async def _answer_in_log(self, stream: str, cause: str) -> Envelope | None:
        row = await self._db.caused_by(stream, cause)
        if row is None:
            return None
        meta = json.loads(row["metadata"])
        return Envelope(event_id=row["event_id"], stream=stream, seq=row["stream_version"], type=row["type"],
                        version=row["version"], occurred_at=meta["occurred_at"],
                        correlation_id=meta["correlation_id"], causation_id=meta.get("causation_id"),
                        actor=meta.get("actor"), trace=meta.get("trace") or {}, data=json.loads(row["data"]))
