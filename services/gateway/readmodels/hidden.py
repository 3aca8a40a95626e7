"""What owners have hidden: deleted conversations and pictures, kept in the gateway's own tables.

Deleting only hides: the log keeps every event, and these rows are not a read model (a rebuild of the
views leaves them alone), so a hidden thing stays hidden whatever is replayed.
"""

from __future__ import annotations

from uuid import UUID

from services.gateway.db import Database

__all__ = ["conversation_hidden", "hide_conversation", "hide_picture"]


async def hide_conversation(db: Database, conversation_id: UUID, user_id: str) -> None:
    # Hiding twice is hiding once: the first time is the one remembered.
    await db.execute("INSERT INTO hidden_conversations (conversation_id, user_id) VALUES ($1, $2) "
                     "ON CONFLICT (conversation_id) DO NOTHING", conversation_id, user_id)


async def conversation_hidden(db: Database, conversation_id: UUID) -> bool:
    return await db.fetchval("SELECT 1 FROM hidden_conversations WHERE conversation_id = $1",
                             conversation_id) is not None


async def hide_picture(db: Database, chain_id: UUID, user_id: str) -> None:
    await db.execute("INSERT INTO hidden_pictures (chain_id, user_id) VALUES ($1, $2) "
                     "ON CONFLICT (chain_id) DO NOTHING", chain_id, user_id)
