"""API keys get a unique public id (`key_id`) and the time they were last used.

The 8-character `prefix` a user recognises a key by is not unique (5 random characters after
`lk_`), so `/auth/keys/{key_id}` names a key by this id instead; existing keys get one each.
`last_used_at` is written when a gateway process looks a key up, at most once a minute per process.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("key_id", postgresql.UUID(as_uuid=True), nullable=False,
                                        server_default=sa.text("gen_random_uuid()")))
    op.create_unique_constraint("api_keys_key_id_key", "api_keys", ["key_id"])
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "last_used_at")
    op.drop_constraint("api_keys_key_id_key", "api_keys", type_="unique")
    op.drop_column("api_keys", "key_id")
