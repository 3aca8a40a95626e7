"""Gateway tables: accounts (users, API keys), the picture requests it sent, and the read models
its projector folds from the log (chains, images, characters, conversations, chat replies).

The `*_view` tables and `projector_checkpoints` are disposable: truncate them and the projector
rebuilds them from the events table. `users`, `api_keys` and `chain_submissions` are the
gateway's own records and are not in the log.

The first revision of the gateway's own migration branch ("gateway"), apart from the event log's:
it needs the log's tables (0002) to exist, and nothing else of the log depends on it.

Revision ID: 0003
Revises: (branch base; depends on 0002)
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = None
branch_labels = ("gateway",)
depends_on = "0002"

_NOW = sa.func.now()


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=None if nullable else _NOW)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        _when("created_at"),
        _when("registered_at", nullable=True),
        sa.CheckConstraint("kind IN ('anonymous', 'registered')", name="users_kind_check"),
    )
    op.create_table(
        "api_keys",
        # sha256 of the key: a leaked table does not leak working keys.
        sa.Column("key_hash", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        _when("created_at"),
        _when("revoked_at", nullable=True),
    )
    op.create_index("api_keys_user_idx", "api_keys", ["user_id"])
    op.create_table(
        "chain_submissions",
        sa.Column("chain_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("character_id", sa.Text, nullable=False),
        sa.Column("request_text", sa.Text, nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("source_chain_id", postgresql.UUID(as_uuid=True), nullable=True),
        _when("submitted_at"),
    )
    op.create_index("chain_submissions_user_idx", "chain_submissions", ["user_id"])

    op.create_table(
        "chains_view",
        sa.Column("chain_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("character_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("request_text", sa.Text, nullable=False),
        sa.Column("parent_chain_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("branch_from_step", sa.Integer, nullable=True),
        sa.Column("batch_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("final_sha256", sa.Text, nullable=True),
        sa.Column("steps", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        _when("created_at"),
        _when("updated_at"),
    )
    op.create_index("chains_view_user_idx", "chains_view", ["user_id", "created_at"])
    op.create_index("chains_view_parent_idx", "chains_view", ["parent_chain_id"])
    op.create_table(
        "images_view",
        sa.Column("chain_id", postgresql.UUID(as_uuid=True), nullable=False),
        # "attempt" (every render), "step" (an accepted step), "final" (the chain's picture).
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("media_type", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=True),
        sa.Column("score", sa.Float, nullable=True),
        _when("created_at"),
        sa.PrimaryKeyConstraint("chain_id", "role", "step", "attempt", name="images_view_pkey"),
    )
    op.create_index("images_view_owner_idx", "images_view", ["user_id", "sha256"])
    op.create_index("images_view_gallery_idx", "images_view", ["user_id", "created_at"])
    op.create_table(
        "characters_view",
        sa.Column("character_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("gender", sa.Text, nullable=False),
        sa.Column("personality", sa.Text, nullable=False),
        sa.Column("occupation", sa.Text, nullable=False),
        sa.Column("persona", sa.Text, nullable=False),
        sa.Column("art_style", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=True),
        sa.Column("builtin", sa.Boolean, nullable=False),
        sa.Column("reference", postgresql.JSONB, nullable=True),
        sa.Column("reference_sha256", sa.Text, nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        _when("created_at"),
        _when("updated_at"),
    )
    op.create_index("characters_view_owner_idx", "characters_view", ["owner"])
    op.create_table(
        "conversations_view",
        sa.Column("conversation_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("character_id", sa.Text, nullable=False),
        _when("started_at"),
    )
    op.create_table(
        "replies_view",
        sa.Column("event_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("conversation_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("message_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", sa.Text, nullable=True),
        sa.Column("character_id", sa.Text, nullable=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("offline", sa.Boolean, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        _when("replied_at"),
    )
    op.create_index("replies_view_user_idx", "replies_view", ["user_id"])
    op.create_table(
        "projector_checkpoints",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        _when("updated_at"),
    )


def downgrade() -> None:
    for table in ("projector_checkpoints", "replies_view", "conversations_view", "characters_view", "images_view",
                  "chains_view", "chain_submissions", "api_keys", "users"):
        op.drop_table(table)
