"""The event log: Postgres tables, migrations and the append/read API."""

from services.runtime.eventstore.store import (
    ANY_VERSION,
    AppendResult,
    DuplicateEventId,
    EventStore,
    EventStoreError,
    RecordedEvent,
    WrongExpectedVersion,
)

__all__ = [
    "ANY_VERSION",
    "AppendResult",
    "DuplicateEventId",
    "EventStore",
    "EventStoreError",
    "RecordedEvent",
    "WrongExpectedVersion",
]
