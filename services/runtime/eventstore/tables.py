"""The log's tables: `events` (append-only, the product's memory) and `outbox` (to be published).

`events.tx_id` records the writing transaction so that a tailing reader can hold back rows
whose lower-numbered neighbours are still uncommitted (identity values are handed out in
insert order but become visible in commit order).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.types import UserDefinedType

__all__ = ["events", "metadata", "outbox", "OUTBOX_CHANNEL"]


class Xid8(UserDefinedType):
    """Postgres' 64-bit transaction id, comparable with pg_snapshot_xmin()."""

    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "xid8"

metadata = MetaData()

OUTBOX_CHANNEL = "likeness_outbox"

events = Table(
    "events",
    metadata,
    Column("global_position", BigInteger, Identity(always=True), primary_key=True),
    Column("stream_id", Text, nullable=False),
    Column("stream_version", BigInteger, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("type", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("tx_id", Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
    UniqueConstraint("stream_id", "stream_version", name="events_stream_version_key"),
    UniqueConstraint("event_id", name="events_event_id_key"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("message_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
