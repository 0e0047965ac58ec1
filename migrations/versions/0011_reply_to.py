"""where a customer asked answers to go: messages.reply_to

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 11:00:00

Replies go to the Reply-To of the customer's newest message, else to its From. Older messages keep none: their
replies go to their From, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_to", sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("reply_to")
