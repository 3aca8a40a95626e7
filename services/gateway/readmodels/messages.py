"""`messages_view`: each message of a conversation, the user's or the character's, in stream order.

Rows are keyed by (conversation, message id) and written once; a later event that says more about a
message (the picture it asked for) updates that row. Replaying an event writes the same row again.
"""

from __future__ import annotations

import asyncpg

from contracts import (
    CharacterReplied, ChatMessageRefused, ChatPictureSelected, ImageRequestedInChat, Message, UserMessageSent,
)
from services.runtime.eventstore import RecordedEvent

__all__ = ["CONVERSATION_EVENTS", "project_message"]

CONVERSATION_EVENTS = (UserMessageSent, ChatMessageRefused, ImageRequestedInChat, ChatPictureSelected,
                       CharacterReplied)

_INSERT = """
    INSERT INTO messages_view (conversation_id, message_id, seq, role, sender, text, in_reply_to, model, offline,
                               chain_id, needs_reference, login_required, refused_reason, refused_rule, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT ON CONSTRAINT messages_view_pkey DO NOTHING
"""


async def project_message(conn: asyncpg.Connection, record: RecordedEvent, message: Message) -> None:
    seq, at = record.envelope.seq or 0, record.recorded_at
    match message:
        case UserMessageSent():
            await conn.execute(_INSERT, message.conversation_id, message.message_id, seq, "user", None,
                               message.text, None, None, None, None, False, False, None, None, at)
        case ChatMessageRefused():
            await conn.execute(_INSERT, message.conversation_id, message.message_id, seq, "user", message.user_id,
                               None, None, None, None, None, False, False, message.reason, message.rule, at)
        case CharacterReplied():
            await conn.execute(_INSERT, message.conversation_id, message.message_id, seq, "character", None,
                               message.text, message.in_reply_to, message.model, message.offline, message.chain_id,
                               message.needs_reference, message.login_required, None, None, at)
        case ImageRequestedInChat():
            # It names the user's message, also when the reply (the model's tool call) wished for the picture.
            await conn.execute("UPDATE messages_view SET chain_id = $3 WHERE conversation_id = $1 AND message_id = $2",
                               message.conversation_id, message.message_id, message.chain_id)
        case ChatPictureSelected():
            await conn.execute("UPDATE messages_view SET picked = true, picked_chain_id = $3 "
                               "WHERE conversation_id = $1 AND message_id = $2",
                               message.conversation_id, message.message_id, message.chain_id)
