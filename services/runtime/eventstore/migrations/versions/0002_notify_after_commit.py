"""Drop the outbox's NOTIFY trigger: a notifying transaction holds a database-wide lock through
its commit flush, which serialised concurrent appends (8 writers ran no faster than 1). Writers
now wake the relay after commit instead (in-process call, or a NOTIFY outside the append).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")


def downgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('likeness_outbox', '');
            RETURN NULL;
        END $$;
        """
    )
    op.execute("CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()")
