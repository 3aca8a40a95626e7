"""Conversations read back message by message, and what an owner has hidden (conversations, pictures).

`messages_view` is one row per message of a conversation (the user's, or the character's reply), in
stream order; disposable like every `*_view`, so the projector is sent back to the first event to
fill it. `hidden_conversations` and `hidden_pictures` are the gateway's own records, not read models:
deleting hides a thing from its owner while the log keeps every event, so no rebuild may forget it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_VIEWS = ("chains_view, images_view, characters_view, user_references_view, conversations_view, replies_view, "
          "messages_view")


def _hidden(table: str, key: str) -> None:
    op.create_table(
        table,
        sa.Column(key, postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("hidden_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def upgrade() -> None:
    op.create_table(
        "messages_view",
        sa.Column("conversation_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("message_id", postgresql.UUID(as_uuid=True), nullable=False),
        # The stream version of the event that recorded the message: its order, and the paging cursor.
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        # Who sent a refused message (anyone may address any conversation id); NULL: the conversation's owner.
        sa.Column("sender", sa.Text, nullable=True),
        # NULL for a refused message: the chat service records why, not what was said.
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("in_reply_to", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("model", sa.Text, nullable=True),
        sa.Column("offline", sa.Boolean, nullable=True),
        sa.Column("chain_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("needs_reference", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("login_required", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("refused_reason", sa.Text, nullable=True),
        sa.Column("refused_rule", sa.Text, nullable=True),
        # A user's "go back to the previous picture": the picture gone back to (NULL: the reference photo).
        sa.Column("picked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("picked_chain_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("conversation_id", "message_id", name="messages_view_pkey"),
        sa.CheckConstraint("role IN ('user', 'character')", name="messages_view_role_check"),
    )
    op.create_index("messages_view_order_idx", "messages_view", ["conversation_id", "seq"])
    # The conversation list is per user (and character); it had no index of its own before.
    op.create_index("conversations_view_user_idx", "conversations_view", ["user_id", "character_id"])
    _hidden("hidden_conversations", "conversation_id")
    _hidden("hidden_pictures", "chain_id")
    op.execute(f"TRUNCATE {_VIEWS}")
    op.execute("DELETE FROM projector_checkpoints")


def downgrade() -> None:
    op.drop_table("hidden_pictures")
    op.drop_table("hidden_conversations")
    op.drop_index("conversations_view_user_idx", table_name="conversations_view")
    op.drop_table("messages_view")
