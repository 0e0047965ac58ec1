"""the time zone an operator chose for the pages: operators.timezone

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 10:00:00

An IANA name such as "America/Sao_Paulo"; NULL (every existing operator) means not chosen: the pages show
times in [web] timezone.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.drop_column("timezone")
