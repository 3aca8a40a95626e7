"""The event log: Postgres tables, migrations and the append/read API."""

from services.runtime.eventstore.store import (
    ANY_VERSION,
    AppendResult,
    CommitListener,
    DuplicateEventId,
    EventStore,
    EventStoreError,
    OutboxRow,
    RecordedEvent,
    WrongExpectedVersion,
)

__all__ = [
    "ANY_VERSION",
    "AppendResult",
    "CommitListener",
    "DuplicateEventId",
    "EventStore",
    "EventStoreError",
    "OutboxRow",
    "RecordedEvent",
    "WrongExpectedVersion",
]
