"""Gateway read model of the reference photo each user gave a built-in character.

A built-in character is everyone's, but each user gives it their own face (`reference-*` streams):
one row per (character, user). Disposable like every `*_view`: the projector rebuilds it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_references_view",
        sa.Column("character_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("reference", postgresql.JSONB, nullable=False),
        sa.Column("reference_sha256", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # Serving /images/{sha256} asks "is this one of the user's reference photos?".
    op.create_index("user_references_view_user_sha_idx", "user_references_view", ["user_id", "reference_sha256"])


def downgrade() -> None:
    op.drop_table("user_references_view")
