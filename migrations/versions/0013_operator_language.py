"""the language an operator chose for the pages: operators.language

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 10:00:00

"pt-BR" or "en"; NULL (every existing operator) means not chosen: the pages follow the browser's language.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.drop_column("language")
