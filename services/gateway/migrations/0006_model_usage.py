"""The cost of planning next to the cost of chat: each chain's model calls, and estimated reply tokens.

`chains_view.llm_usage` is the `ModelUsage` the planner recorded with the chain's plan (or refusal);
`replies_view.tokens_estimated` marks replies whose server sent no usage. The views are disposable:
the projector is sent back to the first event so existing rows get the new columns filled in
(their upserts only move forward by version, so they would not be written again otherwise).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_VIEWS = "chains_view, images_view, characters_view, user_references_view, conversations_view, replies_view"


def upgrade() -> None:
    op.add_column("chains_view", sa.Column("llm_usage", postgresql.JSONB, nullable=True))
    op.add_column("replies_view", sa.Column("tokens_estimated", sa.Boolean, nullable=False,
                                            server_default=sa.false()))
    op.execute(f"TRUNCATE {_VIEWS}")
    op.execute("DELETE FROM projector_checkpoints")


def downgrade() -> None:
    op.drop_column("replies_view", "tokens_estimated")
    op.drop_column("chains_view", "llm_usage")
