"""spam and automatic mail: tickets.automatic, blocked senders

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 10:00:00

- tickets.automatic: the ticket was opened by automatic mail (an out-of-office, a list, a delivery report); it
  waits in the "Automatic" view, outside the queues. Old tickets were opened by people, as far as anyone knows.
- blocked_senders: addresses and domains whose mail goes straight to Spam (the status `spam`, a string like the
  other statuses: no schema change).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("automatic", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "blocked_senders",
        sa.Column("pattern", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("pattern", name=op.f("pk_blocked_senders")),
    )


def downgrade() -> None:
    op.drop_table("blocked_senders")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("automatic")
